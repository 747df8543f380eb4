"""What an ingest needs from an exchange, as a protocol (ccxt-free).

:class:`~candlecast.exchange.ccxt_source.CcxtOhlcvSource` is the real implementation; tests may
pass any object with these methods.
"""

from __future__ import annotations

from typing import Protocol

Candle = tuple[int, float, float, float, float, float]
"""``(open_ms, open, high, low, close, volume)``; open time in Unix milliseconds (UTC)."""


class OhlcvSource(Protocol):
    id: str

    def load_markets(self) -> None:
        """Fetch market metadata; raises Transient/PermanentExchangeError."""

    def supports_ohlcv(self) -> bool: ...

    def symbols(self) -> frozenset[str]: ...

    def timeframes(self) -> frozenset[str] | None: ...

    def max_page_limit(self, symbol: str) -> int | None: ...

    def fetch_ohlcv_page(
        self, symbol: str, timeframe: str, since_ms: int, limit: int | None
    ) -> list[Candle]:
        """Candles with open time >= ``since_ms``, ascending, at most ``limit`` of them."""
        ...
