"""The one place candlecast talks to ccxt: create an exchange, load markets, fetch OHLCV pages.

:class:`CcxtOhlcvSource` wraps a *synchronous* ccxt exchange and speaks candlecast's terms:
candles come back as ``(open_ms, open, high, low, close, volume)`` tuples that have been checked
for shape, and every failure is a :class:`~candlecast.exchange.errors.TransientExchangeError` or
:class:`~candlecast.exchange.errors.PermanentExchangeError`. Rate limiting is ccxt's own
(``enableRateLimit=True``); retries are the caller's (see :mod:`candlecast.exchange.retry`).

No credentials are ever set: OHLCV data is public, so there is no apiKey/secret to leak.
"""

from __future__ import annotations

import difflib
import json
import math
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from candlecast.exchange.errors import (
    ExchangeRequestError,
    PermanentExchangeError,
    TransientExchangeError,
    UnknownExchangeError,
)
from candlecast.exchange.source import Candle

T = TypeVar("T")


def available_exchanges() -> list[str]:
    """Every exchange id this ccxt version supports."""
    return list(ccxt.exchanges)


def create_exchange(
    exchange_id: str,
    *,
    timeout_ms: int = 10_000,
    rate_limit_ms: int | None = None,
    api_url: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """A sync ccxt exchange with built-in rate limiting on.

    ``rate_limit_ms`` overrides the exchange's minimum delay between requests (ccxt's
    ``rateLimit``; keep the default for real exchanges). ``api_url`` (tests, proxies) re-points
    every REST endpoint in ``exchange.urls['api']`` to that scheme and host, keeping the paths.
    """
    if exchange_id not in ccxt.exchanges:
        close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownExchangeError(
            f"unknown exchange id {exchange_id!r}: not one of ccxt {ccxt.__version__}'s "
            f"{len(ccxt.exchanges)} exchanges{hint}"
        )
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_ms)}
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    if options:
        config["options"] = dict(options)
    exchange = getattr(ccxt, exchange_id)(config)
    if api_url is not None:
        override_api_urls(exchange, api_url)
    return exchange


def override_api_urls(exchange: Any, base_url: str) -> None:
    """Replace scheme and host of every URL in ``exchange.urls['api']`` by those of ``base_url``."""
    base = urlsplit(base_url)
    if not base.scheme or not base.netloc:
        raise ValueError(
            f"api_url {base_url!r} must be an absolute URL like 'http://127.0.0.1:8080'"
        )

    def rewrite(node: Any) -> Any:
        if isinstance(node, str):
            return urlsplit(node)._replace(scheme=base.scheme, netloc=base.netloc).geturl()
        if isinstance(node, dict):
            return {key: rewrite(value) for key, value in node.items()}
        return node

    exchange.urls["api"] = rewrite(exchange.urls["api"])


def parse_retry_after(value: object, now_s: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if unusable."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - now_s
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class CcxtOhlcvSource:
    """OHLCV pages from one ccxt exchange, with ccxt errors translated to candlecast's."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self.id: str = exchange.id

    @classmethod
    def create(cls, exchange_id: str, **kwargs: Any) -> CcxtOhlcvSource:
        """``CcxtOhlcvSource(create_exchange(exchange_id, **kwargs))``."""
        return cls(create_exchange(exchange_id, **kwargs))

    def __repr__(self) -> str:  # deliberately no config dump: keeps any credentials out of logs
        return f"CcxtOhlcvSource({self.id!r})"

    # ---- metadata ------------------------------------------------------------------------
    def load_markets(self) -> None:
        self._call(lambda: self._exchange.load_markets(), "load_markets")

    def supports_ohlcv(self) -> bool:
        return bool(self._exchange.has.get("fetchOHLCV"))

    def symbols(self) -> frozenset[str]:
        """Unified symbols of the loaded markets (call :meth:`load_markets` first)."""
        return frozenset(self._exchange.markets or {})

    def timeframes(self) -> frozenset[str] | None:
        """Timeframes the exchange declares, or ``None`` when it declares none."""
        declared = getattr(self._exchange, "timeframes", None) or {}
        return frozenset(declared) or None

    def max_page_limit(self, symbol: str) -> int | None:
        """The most candles one ``fetch_ohlcv`` returns for ``symbol`` per ccxt's ``features``."""
        market = (self._exchange.markets or {}).get(symbol) or {}
        market_type = market.get("type") or "spot"
        node = (getattr(self._exchange, "features", None) or {}).get(market_type) or {}
        if market_type in ("swap", "future"):
            node = node.get("inverse" if market.get("inverse") else "linear") or {}
        limit = (node.get("fetchOHLCV") or {}).get("limit")
        return int(limit) if isinstance(limit, int | float) and limit > 0 else None

    # ---- data ----------------------------------------------------------------------------
    def fetch_ohlcv_page(
        self, symbol: str, timeframe: str, since_ms: int, limit: int | None
    ) -> list[Candle]:
        """One ``fetch_ohlcv`` call: candles with open time >= ``since_ms``, ascending.

        Raises ``TransientExchangeError(kind='malformed')`` when the response cannot be parsed or
        rows are not ``[ms, o, h, l, c, v]`` with finite prices.
        """
        what = f"fetch_ohlcv {symbol} {timeframe} since={since_ms}"
        rows = self._call(
            lambda: self._exchange.fetch_ohlcv(symbol, timeframe, since_ms, limit), what
        )
        if not isinstance(rows, list):
            raise TransientExchangeError(self.id, "malformed", f"{what}: got {type(rows).__name__}")
        if not rows:
            self._raise_if_last_body_unparseable(what)
        return [self._check_row(row, what) for row in rows]

    def _check_row(self, row: Any, what: str) -> Candle:
        try:
            if len(row) < 6:
                raise ValueError(f"expected 6 fields, got {len(row)}")
            ts = row[0]
            if not isinstance(ts, int) or isinstance(ts, bool):
                raise TypeError("timestamp is not an integer of milliseconds")
            values = [float(x) for x in row[1:5]]
            volume = float("nan") if row[5] is None else float(row[5])
            if not all(math.isfinite(v) for v in values):
                raise ValueError("non-finite price")
        except (TypeError, ValueError, IndexError) as error:
            raise TransientExchangeError(
                self.id, "malformed", f"{what}: bad candle row {row!r:.80}: {error}"
            ) from error
        return (ts, values[0], values[1], values[2], values[3], volume)

    def _raise_if_last_body_unparseable(self, what: str) -> None:
        # ccxt turns an unparseable JSON body into an empty candle list; detect it from the body.
        body = getattr(self._exchange, "last_http_response", None)
        if isinstance(body, str) and body.strip():
            try:
                json.loads(body)
            except ValueError as error:
                raise TransientExchangeError(
                    self.id, "malformed", f"{what}: response is not valid JSON: {body!r:.80}"
                ) from error

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except ccxt.BaseError as error:
            raise self._translate(error, what) from error
        except (TypeError, ValueError, KeyError, IndexError) as error:
            # ccxt's parsers choke on a garbled body this way rather than with a ccxt error.
            raise TransientExchangeError(
                self.id,
                "malformed",
                f"{what}: unparseable response ({type(error).__name__}: {error})",
            ) from error

    def _translate(self, error: Exception, what: str) -> ExchangeRequestError:
        message = f"{what}: {type(error).__name__}: {error}"
        if isinstance(error, ccxt.RequestTimeout):
            return TransientExchangeError(self.id, "timeout", message)
        if isinstance(error, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            return TransientExchangeError(self.id, "rate_limit", message, self._retry_after())
        if isinstance(error, ccxt.ExchangeNotAvailable):
            return TransientExchangeError(self.id, "unavailable", message, self._retry_after())
        if isinstance(error, ccxt.NetworkError):
            return TransientExchangeError(self.id, "network", message)
        if isinstance(error, ccxt.BadResponse):
            return TransientExchangeError(self.id, "malformed", message)
        return PermanentExchangeError(self.id, message)

    def _retry_after(self) -> float | None:
        headers = getattr(self._exchange, "last_response_headers", None) or {}
        for key, value in dict(headers).items():
            if str(key).lower() == "retry-after":
                return parse_retry_after(value, time.time())
        return None
