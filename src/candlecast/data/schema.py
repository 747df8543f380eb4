"""The canonical candle table.

One row per candle: ``timestamp`` is the candle's OPEN time in UTC, prices are floats in quote
currency, ``volume`` is in units of the base currency. ``exchange`` is a ccxt exchange id,
``symbol`` a ccxt unified symbol (``BTC/USD``) and ``timeframe`` a ccxt timeframe (``30m``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
OHLCV_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
SERIES_COLUMNS: tuple[str, ...] = ("exchange", "symbol", "timeframe")
CANDLE_COLUMNS: tuple[str, ...] = ("timestamp", *OHLCV_COLUMNS, *SERIES_COLUMNS)

_TIMEFRAME_RE = re.compile(r"^(\d+)([smhdwM])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$")


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """``"30m"`` -> 30 minutes. Months are rejected: they have no fixed length."""
    match = _TIMEFRAME_RE.match(timeframe)
    if match is None or match.group(2) == "M" or int(match.group(1)) <= 0:
        raise ValueError(
            f"timeframe {timeframe!r} is not supported; expected a ccxt timeframe such as "
            "'1m', '30m', '1h', '4h', '1d'"
        )
    return pd.Timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True, order=True)
class SeriesId:
    """Identifies one candle series: exchange, unified symbol, timeframe."""

    exchange: str
    symbol: str
    timeframe: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.exchange):
            raise ValueError(f"exchange {self.exchange!r} must be a lowercase ccxt exchange id")
        if not _SYMBOL_RE.match(self.symbol):
            raise ValueError(f"symbol {self.symbol!r} must be a ccxt unified symbol like 'BTC/USD'")
        timeframe_to_timedelta(self.timeframe)

    @property
    def key(self) -> str:
        """A string id usable as a Feast entity key and in file names: ``bitfinex:BTC/USD:30m``."""
        return f"{self.exchange}:{self.symbol}:{self.timeframe}"

    @classmethod
    def from_key(cls, key: str) -> SeriesId:
        parts = key.split(":")
        if len(parts) < 3:
            raise ValueError(f"series key {key!r} must look like 'exchange:BASE/QUOTE:timeframe'")
        return cls(parts[0], ":".join(parts[1:-1]), parts[-1])

    @property
    def step(self) -> pd.Timedelta:
        return timeframe_to_timedelta(self.timeframe)


def empty_candles() -> pd.DataFrame:
    """An empty canonical candle table with the right dtypes."""
    return conform(pd.DataFrame({c: [] for c in CANDLE_COLUMNS}))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with exactly the canonical columns, order and dtypes.

    Raises ``ValueError`` naming the missing columns; it does not validate values (that is the
    validation gate's job) and never drops rows.
    """
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"candle table is missing columns {missing}; expected {list(CANDLE_COLUMNS)}"
        )
    out = frame.loc[:, list(CANDLE_COLUMNS)].copy()
    ts = out["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts, utc=True)
    out["timestamp"] = ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    for col in OHLCV_COLUMNS:
        out[col] = pd.to_numeric(out[col], errors="raise").astype("float64")
    for col in SERIES_COLUMNS:
        out[col] = out[col].astype("string").astype(object)
    return out.reset_index(drop=True)
