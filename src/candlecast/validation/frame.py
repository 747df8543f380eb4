"""The frame GX validates: the input as given plus three helper columns (see ``suite.py``).

The helpers are measurements, not decisions: GX compares them with the suite's bounds. They are
computed defensively (NaN where a needed column is missing or of the wrong type) so a broken
table still reaches GX, whose schema rules then name what is wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.data.schema import SERIES_COLUMNS, timeframe_to_timedelta
from candlecast.validation.suite import ABS_LOG_RETURN, DERIVED_COLUMNS, ROW_ID, STEPS


def _epoch_seconds(ts: pd.Series) -> pd.Series | None:
    """Seconds since the epoch as floats (NaN for NaT), or None if ``ts`` is not datetimes."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    elif not pd.api.types.is_datetime64_dtype(ts.dtype):
        return None
    values = ts.to_numpy(dtype="datetime64[ns]")
    seconds = values.astype("int64").astype("float64") / 1e9
    seconds[np.isnat(values)] = np.nan
    return pd.Series(seconds, index=ts.index)


def _step_seconds(timeframe: object) -> float:
    try:
        return float(timeframe_to_timedelta(str(timeframe)).total_seconds())
    except ValueError:
        return np.nan


def _series_groups(frame: pd.DataFrame) -> pd.Series:
    """An integer id per (exchange, symbol, timeframe); missing values form their own group."""
    keys = frame[list(SERIES_COLUMNS)].astype(object).where(frame[list(SERIES_COLUMNS)].notna(), "")
    return pd.Series(
        keys.groupby(list(SERIES_COLUMNS), sort=False).ngroup().to_numpy(), index=frame.index
    )


def steps_since_previous(frame: pd.DataFrame) -> pd.Series:
    """Time since the latest earlier timestamp of the same series, in timeframes (NaN if none)."""
    nan = pd.Series(np.nan, index=frame.index)
    if not {"timestamp", *SERIES_COLUMNS} <= set(frame.columns):
        return nan
    seconds = _epoch_seconds(frame["timestamp"])
    if seconds is None:
        return nan
    groups = _series_groups(frame)
    front = seconds.groupby(groups).cummax().groupby(groups).ffill()
    previous_front = front.groupby(groups).shift(1)
    step = frame["timeframe"].map({tf: _step_seconds(tf) for tf in frame["timeframe"].unique()})
    return (seconds - previous_front) / step.astype("float64")


def abs_log_returns(frame: pd.DataFrame) -> pd.Series:
    """``|log(close / previous close)|`` within each series, in input order (NaN if undefined)."""
    nan = pd.Series(np.nan, index=frame.index)
    if not {"close", *SERIES_COLUMNS} <= set(frame.columns):
        return nan
    if not pd.api.types.is_numeric_dtype(frame["close"].dtype):
        return nan
    close = frame["close"].astype("float64").where(frame["close"] > 0)
    previous = close.groupby(_series_groups(frame)).shift(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(np.log(close / previous))


def gx_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """The input (columns and order untouched, index reset) plus the gate's helper columns."""
    clash = [c for c in DERIVED_COLUMNS if c in candles.columns]
    if clash:
        raise ValueError(f"candle table has reserved validation column(s) {clash}; drop them first")
    frame = candles.reset_index(drop=True).copy()
    frame[ROW_ID] = np.arange(len(frame), dtype="int64")
    frame[STEPS] = steps_since_previous(frame).astype("float64")
    frame[ABS_LOG_RETURN] = abs_log_returns(frame).astype("float64")
    return frame
