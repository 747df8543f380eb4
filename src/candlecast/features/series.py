"""One candle series as validated numpy arrays, split into contiguous runs at gaps.

A *gap* is any step between consecutive timestamps that differs from the timeframe. Everything
that depends on continuity restarts after a gap; this module finds the runs once so the batch
features and the labels agree on them. Duplicate or unsorted timestamps are errors, never fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from candlecast.data.schema import SERIES_COLUMNS, timeframe_to_timedelta

REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume",
                                     *SERIES_COLUMNS)


@dataclass(frozen=True)
class SeriesArrays:
    """Validated float64/int64 arrays of one series plus its contiguous runs.

    ``age[i]`` is the number of bars since the run containing row ``i`` started (0 on its first
    bar); runs are ``[starts[k], ends[k])``; ``gap_reset[i]`` is True on the first bar after a gap.
    """

    ts_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    step_ns: int
    age: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    gap_reset: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


def timestamps_ns(candles: pd.DataFrame) -> np.ndarray:
    """The ``timestamp`` column as int64 nanoseconds since the epoch (UTC); tz-aware required."""
    ts = candles["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError(
            "candles.timestamp must be tz-aware UTC datetimes (canonical table), "
            f"got dtype {ts.dtype}"
        )
    return pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").asi8.copy()


def check_single_series(candles: pd.DataFrame) -> str:
    """Raise unless all rows share one exchange/symbol/timeframe; return the timeframe."""
    missing = [c for c in REQUIRED_COLUMNS if c not in candles.columns]
    if missing:
        raise ValueError(
            f"candle table is missing columns {missing}; expected {list(REQUIRED_COLUMNS)}"
        )
    if len(candles) == 0:
        raise ValueError("candle table is empty; features need at least one candle")
    for col in SERIES_COLUMNS:
        values = candles[col].to_numpy()
        if not (values == values[0]).all():
            keys = candles.loc[:, list(SERIES_COLUMNS)].drop_duplicates()
            found = [tuple(r) for r in keys.head(3).itertuples(index=False)]
            raise ValueError(
                f"candles hold {len(keys)} series (e.g. {found}); this function takes one "
                "series, use the *_multi variant to group by exchange/symbol/timeframe"
            )
    return str(candles["timeframe"].iloc[0])


def check_timestamps(ts_ns: np.ndarray) -> None:
    """Raise on duplicate or decreasing timestamps, naming the first offending row."""
    if len(ts_ns) < 2:
        return
    steps = np.diff(ts_ns)
    bad = np.flatnonzero(steps <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        a, b = pd.Timestamp(ts_ns[i - 1], tz="UTC"), pd.Timestamp(ts_ns[i], tz="UTC")
        what = "duplicate timestamp" if a == b else "timestamps not sorted ascending"
        raise ValueError(f"candles: {what} at rows {i - 1} and {i} ({a} then {b})")


def _float_column(candles: pd.DataFrame, name: str, positive: bool) -> np.ndarray:
    values = np.ascontiguousarray(candles[name].to_numpy(dtype=np.float64, na_value=np.nan))
    ok = np.isfinite(values) & ((values > 0) if positive else (values >= 0))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        rule = "finite and > 0" if positive else "finite and >= 0"
        raise ValueError(f"candles.{name} must be {rule}; row {i} holds {values[i]!r}")
    return values


def segments(ts_ns: np.ndarray, step_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(age, starts, ends)`` of the contiguous runs of ``ts_ns`` (already checked sorted)."""
    n = len(ts_ns)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = np.diff(ts_ns) != step_ns
    idx = np.arange(n, dtype=np.int64)
    starts = np.flatnonzero(new_run)
    age = idx - np.maximum.accumulate(np.where(new_run, idx, 0))
    ends = np.append(starts[1:], n)
    return age, starts, ends


def series_arrays(candles: pd.DataFrame) -> SeriesArrays:
    """Validate one canonical candle series and return it as arrays with its runs.

    Raises ``ValueError`` for: missing columns, more than one series, empty input, naive or
    duplicate/unsorted timestamps, non-finite or non-positive prices, negative/NaN volume.
    """
    timeframe = check_single_series(candles)
    step_ns = int(timeframe_to_timedelta(timeframe).value)
    ts_ns = timestamps_ns(candles)
    check_timestamps(ts_ns)
    arrays = {c: _float_column(candles, c, positive=True) for c in ("open", "high", "low", "close")}
    volume = _float_column(candles, "volume", positive=False)
    age, starts, ends = segments(ts_ns, step_ns)
    gap_reset = age == 0
    gap_reset[0] = False
    return SeriesArrays(ts_ns=ts_ns, volume=volume, step_ns=step_ns, age=age, starts=starts,
                        ends=ends, gap_reset=gap_reset, **arrays)
