"""Closed candles as the trader sees them, and the per-candle checks it runs before using one.

The batch validation gate (Great Expectations) checks whole tables; a live candle arrives alone,
so the trader repeats the per-row rules here in plain Python (microseconds, no GX): finite
positive prices, ``low <= open, close <= high``, finite non-negative volume, an open time on the
timeframe grid and after the last processed candle. A step of more than one timeframe is a gap:
reported, then processed (the feature engine restarts its warm-up, exactly as in the backtest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd


class Bar(NamedTuple):
    """One closed candle of one series; ``ts`` is the OPEN time in UTC nanoseconds."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def close_time(self, step_ns: int) -> pd.Timestamp:
        return pd.Timestamp(self.ts + step_ns, tz="UTC")

    def open_time(self) -> pd.Timestamp:
        return pd.Timestamp(self.ts, tz="UTC")


@dataclass(frozen=True)
class BarCheck:
    """Verdict on one candle: ``ok`` (use it), with ``missing`` bars before it when it follows a
    gap; or not ok with a ``rule`` and ``reason`` (skip it, report it)."""

    ok: bool
    rule: str = ""
    reason: str = ""
    missing: int = 0


def check_bar(bar: Bar, last_ts: int | None, step_ns: int) -> BarCheck:
    """The per-candle rules; ``last_ts`` is the open time of the last processed candle."""
    when = pd.Timestamp(bar.ts, tz="UTC")
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(isinstance(p, float | int) and math.isfinite(p) and p > 0 for p in prices):
        return BarCheck(False, "positive_prices", f"candle {when}: prices must be finite and > 0, "
                        f"got open={bar.open} high={bar.high} low={bar.low} close={bar.close}")
    if not (bar.low <= min(bar.open, bar.close) and bar.high >= max(bar.open, bar.close)):
        return BarCheck(False, "ohlc_consistent", f"candle {when}: need low <= open, close <= "
                        f"high, got open={bar.open} high={bar.high} low={bar.low} "
                        f"close={bar.close}")
    if not (math.isfinite(bar.volume) and bar.volume >= 0):
        return BarCheck(False, "volume_non_negative",
                        f"candle {when}: volume must be finite and >= 0, got {bar.volume}")
    if bar.ts % step_ns != 0:
        return BarCheck(False, "timestamp_on_grid",
                        f"candle {when}: open time is not a multiple of the timeframe")
    if last_ts is not None:
        if bar.ts <= last_ts:
            rule = "timestamp_unique" if bar.ts == last_ts else "timestamp_increasing"
            return BarCheck(False, rule, f"candle {when} is not after the last processed "
                            f"{pd.Timestamp(last_ts, tz='UTC')}")
        missing = (bar.ts - last_ts) // step_ns - 1
        if missing > 0:
            return BarCheck(True, "gap", f"{missing} candle(s) missing before {when}", missing)
    return BarCheck(True)


def bars_from_frame(candles: pd.DataFrame) -> list[Bar]:
    """Rows of a canonical candle table (one series, oldest first) as :class:`Bar` values."""
    ts = pd.DatetimeIndex(candles["timestamp"]).tz_convert("UTC").asi8.tolist()
    cols = [candles[c].to_numpy(dtype=float).tolist()
            for c in ("open", "high", "low", "close", "volume")]
    return [Bar(int(t), *values) for t, *values in zip(ts, *cols, strict=True)]


def frame_from_bars(bars: list[Bar], exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
    """The inverse of :func:`bars_from_frame`: a canonical candle table."""
    frame = pd.DataFrame(bars, columns=["ts", "open", "high", "low", "close", "volume"])
    frame.insert(0, "timestamp", pd.to_datetime(frame.pop("ts"), unit="ns", utc=True))
    frame["exchange"], frame["symbol"], frame["timeframe"] = exchange, symbol, timeframe
    return frame
