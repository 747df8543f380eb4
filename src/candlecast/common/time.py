"""Time helpers every package may use: everything in candlecast is UTC.

``as_utc`` reads a time stamp (a naive one is taken as UTC, an aware one converted);
``naive_utc`` turns a frame's time column into tz-naive UTC wall times (what MLflow's
``datetime`` schema type accepts); ``utc_now_iso`` is the ISO text of now used in journals,
tags and alerts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import pandas as pd


def as_utc(value: object) -> pd.Timestamp:
    """``value`` (anything ``pd.Timestamp`` reads) as a UTC timestamp; naive means UTC."""
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def naive_utc(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` with ``column`` as tz-naive UTC: MLflow's ``datetime`` type carries no zone
    and rejects tz-aware input, so the pyfunc's callers pass UTC wall times."""
    out = frame.copy()
    values = pd.to_datetime(out[column], utc=True)
    out[column] = values.dt.tz_localize(None)
    return out


def utc_now_iso(timespec: Literal["seconds", "milliseconds"] = "seconds") -> str:
    """Now in UTC as ISO 8601 text, e.g. ``2024-01-31T12:00:00+00:00``."""
    return datetime.now(UTC).isoformat(timespec=timespec)
