"""Past-only windows over the rows of a feature frame, per series, on each series' time grid.

The sequence models (Chronos, the temporal-attention transformer) look at the last ``length``
candles of a row's own series. This module turns a feature frame into an index matrix
``(n_rows, length)`` of row positions: entry ``[i, -1]`` is row ``i`` itself, ``[i, -2]`` the
candle one step earlier, and so on; ``-1`` marks a candle that is not in the frame (before its
start, a gap in the data, a purged/embargoed hole). Windows therefore never contain a row after
``i`` — the no-look-ahead guarantee lives here and is tested here.

With a timestamp column the grid is real time: a row's slot is ``(t - t0) / step`` where
``step`` is the smallest spacing between consecutive timestamps of that series, so a missing
candle is a missing slot rather than a silently shifted window. Without one, rows are taken to
be consecutive candles in frame order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

MISSING = -1


@dataclass(frozen=True)
class SeriesGrid:
    """One series' rows placed on its regular time grid.

    ``rows`` are positions into the frame, ``slots`` their grid positions (same order, strictly
    increasing), ``size`` the grid length (last slot + 1).
    """

    key: object
    rows: np.ndarray
    slots: np.ndarray

    @property
    def size(self) -> int:
        return int(self.slots[-1]) + 1 if len(self.slots) else 0

    def lookup(self) -> np.ndarray:
        """Grid slot -> frame row (``MISSING`` where the series has no candle)."""
        table = np.full(self.size, MISSING, dtype=np.int64)
        table[self.slots] = self.rows
        return table

    def on_grid(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per frame row) laid out on this series' grid, NaN in missing slots."""
        out = np.full(self.size, np.nan, dtype=np.float64)
        out[self.slots] = values[self.rows]
        return out


def series_grids(
    X: pd.DataFrame, series_column: str | None, timestamp_column: str | None
) -> list[SeriesGrid]:
    """Split ``X`` into series and place each series' rows on its time grid.

    ``series_column=None`` means the whole frame is one series. If ``timestamp_column`` is set
    and present in ``X`` the grid follows real time; otherwise rows are consecutive in frame
    order. Raises ``ValueError`` for a configured series column that ``X`` lacks, missing series
    keys, missing or duplicate timestamps, or timestamps off the series' own step.
    """
    n = len(X)
    if series_column is None:
        groups: list[tuple[object, np.ndarray]] = [(None, np.arange(n, dtype=np.int64))]
    else:
        if series_column not in X.columns:
            raise ValueError(
                f"sequence models need the series key column {series_column!r} to keep series "
                f"apart; the frame has {list(X.columns)[:12]} (set series_column=None for a "
                "single-series frame)"
            )
        keys = X[series_column]
        if keys.isna().any():
            raise ValueError(
                f"series key column {series_column!r} has missing values; first at row "
                f"{int(np.flatnonzero(keys.isna().to_numpy())[0])}"
            )
        codes, uniques = pd.factorize(keys, sort=True)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        groups = [(uniques[k], order[bounds[k] : bounds[k + 1]]) for k in range(len(uniques))]

    if timestamp_column is None or timestamp_column not in X.columns:
        return [SeriesGrid(key, rows, np.arange(len(rows), dtype=np.int64)) for key, rows in groups]
    times = pd.DatetimeIndex(pd.to_datetime(X[timestamp_column], utc=True))
    if times.hasnans:
        first = int(np.flatnonzero(times.isna())[0])
        raise ValueError(f"timestamp column {timestamp_column!r} has missing values; row {first}")
    nanoseconds = times.as_unit("ns").asi8
    return [_time_grid(key, rows, nanoseconds[rows], timestamp_column) for key, rows in groups]


def _time_grid(key: object, rows: np.ndarray, ns: np.ndarray, column: str) -> SeriesGrid:
    order = np.argsort(ns, kind="stable")
    ns, rows = ns[order], rows[order]
    if len(ns) == 1:
        return SeriesGrid(key, rows, np.zeros(1, dtype=np.int64))
    diffs = np.diff(ns)
    if (diffs == 0).any():
        at = int(rows[1:][diffs == 0][0])
        raise ValueError(f"series {key!r}: duplicate timestamp in {column!r} at row {at}")
    step = int(diffs.min())
    offset = ns - ns[0]
    if (offset % step != 0).any():
        at = int(rows[np.flatnonzero(offset % step != 0)[0]])
        raise ValueError(
            f"series {key!r}: timestamp at row {at} is not on the series' {step // 10**9}s grid"
        )
    return SeriesGrid(key, rows, offset // step)


def latest_rows(grids: list[SeriesGrid]) -> np.ndarray:
    """Frame positions of each series' latest row (for live, one-row-per-series prediction)."""
    return np.array([grid.rows[-1] for grid in grids if len(grid.rows)], dtype=np.int64)


def window_index(grids: list[SeriesGrid], n_rows: int, length: int) -> np.ndarray:
    """``(n_rows, length)`` frame-row positions of the ``length`` grid slots ending at each row.

    Column ``length - 1`` is the row itself; ``MISSING`` marks slots without a candle in the
    frame. Only slots at or before a row's own slot are ever referenced.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    out = np.full((n_rows, length), MISSING, dtype=np.int64)
    for grid in grids:
        padded = np.concatenate([np.full(length - 1, MISSING, dtype=np.int64), grid.lookup()])
        out[grid.rows] = sliding_window_view(padded, length)[grid.slots]
    return out


def gather_windows(values: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    """``values[index]`` (``values`` is ``(n_rows,)`` or ``(n_rows, f)``) with ``fill`` where the
    index is ``MISSING``."""
    pad_shape = (1, *values.shape[1:])
    padded = np.concatenate([values, np.full(pad_shape, fill, dtype=values.dtype)])
    return padded[np.where(index == MISSING, len(values), index)]


def last_window(ns: np.ndarray | None, n_rows: int, length: int, key: object = None,
                column: str = "timestamp") -> np.ndarray:
    """``(length,)`` row positions of the window ending at the LATEST row of ONE series.

    The live-inference twin of ``window_index(series_grids(X, ...), ...)[latest row]`` for a
    single series given as arrays: ``ns`` its int64 nanosecond timestamps (any order; ``None``
    means consecutive rows in order, as without a timestamp column). The grid (step = smallest
    spacing of these rows) and its checks are those of :func:`series_grids`, so the window is
    the same one the frame path builds from the same rows.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    rows = np.arange(n_rows, dtype=np.int64)
    if ns is None:
        grid = SeriesGrid(key, rows, rows.copy())
    else:
        grid = _time_grid(key, rows, np.asarray(ns, dtype=np.int64), column)
    end = int(grid.slots[-1])
    slots = np.arange(end - length + 1, end + 1)
    out = np.full(length, MISSING, dtype=np.int64)
    known = slots >= 0
    out[known] = grid.lookup()[slots[known]]
    return out
