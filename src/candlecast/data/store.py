"""Parquet candle store, partitioned by exchange/symbol/timeframe, with atomic upserts.

Layout: ``<root>/exchange=<id>/symbol=<BASE-QUOTE>/timeframe=<tf>/candles.parquet``. A write goes
to a temporary file in the same folder and is moved over the old file with ``os.replace``, so a
reader (or a crash) sees either the old table or the new one, never half of one. Writers of one
series (an ingest, the streaming trader appending what it traded) take an exclusive ``flock`` on
the series folder for the read-merge-write, so two processes never lose each other's candles.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from candlecast.data.schema import SeriesId, conform, empty_candles

FILE_NAME = "candles.parquet"


def _symbol_dir(symbol: str) -> str:
    return symbol.replace("/", "-").replace(":", "_")


def _symbol_from_dir(name: str) -> str:
    base, _, rest = name.partition("-")
    return f"{base}/{rest.replace('_', ':')}"


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` via a temp file and ``os.replace`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def series_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` (created if needed) for one read-merge-write; a lock
    on the directory itself leaves no lock file among the data (which DVC hashes)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class CandleStore:
    """The on-disk candle tables, one Parquet file per series."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, series: SeriesId) -> Path:
        return (
            self.root
            / f"exchange={series.exchange}"
            / f"symbol={_symbol_dir(series.symbol)}"
            / f"timeframe={series.timeframe}"
            / FILE_NAME
        )

    def series(self) -> list[SeriesId]:
        """Every series with a stored table, sorted."""
        found = []
        for path in self.root.glob(f"exchange=*/symbol=*/timeframe=*/{FILE_NAME}"):
            ex, sym, tf = (
                p.name.split("=", 1)[1] for p in (path.parents[2], path.parents[1], path.parent)
            )
            found.append(SeriesId(ex, _symbol_from_dir(sym), tf))
        return sorted(found)

    def read(self, series: SeriesId) -> pd.DataFrame:
        """The stored candles of ``series`` sorted by time (empty table if none)."""
        path = self.path(series)
        if not path.exists():
            return empty_candles()
        return conform(pd.read_parquet(path))

    def read_all(self, series: list[SeriesId] | None = None) -> pd.DataFrame:
        frames = [self.read(s) for s in (series if series is not None else self.series())]
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_candles()
        return pd.concat(frames, ignore_index=True)

    def last_timestamp(self, series: SeriesId) -> pd.Timestamp | None:
        stored = self.read(series)
        return None if stored.empty else stored["timestamp"].iloc[-1]

    def upsert(self, series: SeriesId, candles: pd.DataFrame) -> int:
        """Merge ``candles`` into the stored table; a candle already stored is replaced.

        Returns the number of rows in the table afterwards. Re-running with the same candles
        leaves the file's content identical.
        """
        new = conform(candles)
        wrong = new[
            (new["exchange"] != series.exchange)
            | (new["symbol"] != series.symbol)
            | (new["timeframe"] != series.timeframe)
        ]
        if len(wrong):
            raise ValueError(f"{len(wrong)} candle(s) do not belong to series {series.key}")
        path = self.path(series)
        with series_lock(path.parent):
            merged = pd.concat([self.read(series), new], ignore_index=True)
            merged = merged.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
            merged = merged.reset_index(drop=True)
            write_parquet_atomic(merged, path)
        return len(merged)

    def replace(self, series: SeriesId, candles: pd.DataFrame) -> None:
        """Overwrite the stored table of ``series`` with ``candles`` (sorted, as given)."""
        path = self.path(series)
        with series_lock(path.parent):
            write_parquet_atomic(conform(candles).sort_values("timestamp", kind="stable"), path)

    def __iter__(self) -> Iterator[SeriesId]:
        return iter(self.series())
