"""Input checks: candles and per-bar series become validated numpy arrays, or a clear error.

Every error names the offending row (position in the candle table) or parameter, so a caller
can find it: unsorted or duplicate timestamps, NaN/non-positive prices, inconsistent OHLC,
negative volume, series of the wrong length or misaligned with the candle timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from candlecast.data.schema import timeframe_to_timedelta

NS_PER_YEAR = 365 * 86_400 * 1_000_000_000


@dataclass(frozen=True)
class Market:
    """Validated bar arrays of one symbol (oldest first)."""

    symbol: str
    timeframe: str
    timestamps: pd.DatetimeIndex  # UTC candle open times
    ts_ns: np.ndarray  # int64 ns since epoch
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def n(self) -> int:
        return len(self.close)

    @property
    def bar_ns(self) -> int:
        return int(timeframe_to_timedelta(self.timeframe).value)

    @property
    def bars_per_year(self) -> float:
        return NS_PER_YEAR / self.bar_ns


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _infer_timeframe(ts_ns: np.ndarray) -> str:
    step = int(np.median(np.diff(ts_ns))) // 1_000_000_000
    for unit, seconds in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if step % seconds == 0:
            return f"{step // seconds}{unit}"
    raise ValueError(f"cannot infer a timeframe from a median bar spacing of {step} s")


def prepare_market(candles: pd.DataFrame, timeframe: str | None = None) -> Market:
    """Validate a canonical candle table (see ``candlecast.data.schema``) for backtesting.

    ``timeframe`` defaults to the table's ``timeframe`` column, else the median bar spacing.
    """
    missing = [c for c in ("timestamp", "open", "high", "low", "close", "volume")
               if c not in candles.columns]
    if missing:
        raise ValueError(f"candles are missing columns {missing}")
    if len(candles) < 2:
        raise ValueError(f"candles need at least 2 rows to backtest, got {len(candles)}")
    ts = candles["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError("candles.timestamp must be timezone-aware UTC datetimes")
    index = pd.DatetimeIndex(ts).tz_convert("UTC")
    ts_ns = index.asi8.astype(np.int64)
    step = np.diff(ts_ns)
    if (step <= 0).any():
        row = _first(step <= 0) + 1
        kind = "duplicate" if step[row - 1] == 0 else "unsorted"
        raise ValueError(
            f"candles must be sorted by timestamp without duplicates; {kind} timestamp "
            f"{index[row]} at row {row} (previous row {index[row - 1]})"
        )
    arrays = {}
    for col in ("open", "high", "low", "close", "volume"):
        values = candles[col].to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if col != "volume":
            bad |= values <= 0
        else:
            bad |= values < 0
        if bad.any():
            row = _first(bad)
            what = "non-negative" if col == "volume" else "positive"
            raise ValueError(
                f"candles.{col} must be finite and {what}; got {values[row]} at row {row} "
                f"({index[row]})"
            )
        arrays[col] = values
    o, h, lo, c = arrays["open"], arrays["high"], arrays["low"], arrays["close"]
    bad = (h < np.maximum(o, c)) | (lo > np.minimum(o, c))
    if bad.any():
        row = _first(bad)
        raise ValueError(
            f"candles have inconsistent OHLC at row {row} ({index[row]}): open={o[row]} "
            f"high={h[row]} low={lo[row]} close={c[row]} (need low <= open, close <= high)"
        )
    if timeframe is None:
        if "timeframe" in candles.columns and candles["timeframe"].nunique() == 1:
            timeframe = str(candles["timeframe"].iloc[0])
        else:
            timeframe = _infer_timeframe(ts_ns)
    timeframe_to_timedelta(timeframe)
    symbol = str(candles["symbol"].iloc[0]) if "symbol" in candles.columns else "ASSET"
    return Market(symbol, timeframe, index, ts_ns, o, h, lo, c, arrays["volume"])


def align(values: object, market: Market, name: str, allow_nan: bool = True) -> np.ndarray:
    """A per-bar input (signal, ATR, volatility, ...) as a float array aligned with ``market``.

    A ``pd.Series`` with a DatetimeIndex must carry exactly the candle timestamps; anything
    else must have one value per candle.
    """
    if isinstance(values, pd.Series) and isinstance(values.index, pd.DatetimeIndex):
        index = values.index
        if index.tz is None:
            raise ValueError(f"{name} has a timezone-naive DatetimeIndex; expected UTC")
        if len(index) != market.n or not index.equals(market.timestamps):
            if len(index) != market.n:
                raise ValueError(f"{name} has {len(index)} rows but candles have {market.n}")
            row = _first(index.asi8 != market.ts_ns)
            raise ValueError(
                f"{name} is misaligned with the candles: row {row} is {index[row]}, candle is "
                f"{market.timestamps[row]}"
            )
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) != market.n:
        raise ValueError(f"{name} has shape {array.shape}; expected ({market.n},), one per candle")
    if not allow_nan and np.isnan(array).any():
        row = _first(np.isnan(array))
        raise ValueError(f"{name} is NaN at row {row} ({market.timestamps[row]})")
    return array


def signal_array(signal: object, market: Market, allow_short: bool) -> np.ndarray:
    """Signals as an int8 array of -1/0/+1; -1 becomes 0 (flat) when shorts are not allowed."""
    values = align(signal, market, "signal", allow_nan=False)
    bad = (values != -1) & (values != 0) & (values != 1)
    if bad.any():
        row = _first(bad)
        raise ValueError(
            f"signal must be -1, 0 or +1; got {values[row]} at row {row} "
            f"({market.timestamps[row]}); threshold probabilities before backtesting"
        )
    out = values.astype(np.int8)
    if not allow_short:
        out[out < 0] = 0
    return out


def funding_array(funding: object | None, market: Market, per_bar_rate: float) -> np.ndarray | None:
    """Per-bar funding rates (fraction of notional paid by longs at each close), or ``None``."""
    if funding is None:
        return None if per_bar_rate == 0.0 else np.full(market.n, per_bar_rate)
    return align(funding, market, "funding", allow_nan=False)
