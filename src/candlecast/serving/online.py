"""Feast reads for ``/signal``: the latest online row of a series, and (for window models) a
per-series window of recent rows.

The online store holds ONE row per series (the latest). A model that needs history gets it
from a window kept in the service: primed at start-up from the feature view's offline source
(the features Parquet the pipeline writes) and extended with every newer online row read. A
candle that was written online but never read by ``/signal`` leaves a missing slot in the
window (the sequence models place rows on their time grid by ``event_timestamp``, so a hole
is a hole, not a shifted window). Callers that need exact history use ``/predict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY


@dataclass(frozen=True)
class OnlineRow:
    series_id: str
    event_timestamp: pd.Timestamp
    values: dict[str, float]  # every column of the feature service, None read as NaN

    def frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """One-row frame ``series_id, event_timestamp, *columns`` (missing columns NaN)."""
        get = self.values.get
        return pd.DataFrame(
            [[self.series_id, self.event_timestamp, *(get(c, math.nan) for c in columns)]],
            columns=[JOIN_KEY, EVENT_TIMESTAMP, *columns],
        )


class FeastReader:
    """Online reads of one feature service (and its view's offline source for priming)."""

    def __init__(self, repo_path: Path, feature_service: str, feature_view: str) -> None:
        from feast import FeatureStore

        if not (repo_path / "feature_store.yaml").exists():
            raise FileNotFoundError(f"no Feast repository (feature_store.yaml) in {repo_path}")
        self.store = FeatureStore(repo_path=str(repo_path))
        self.service = self.store.get_feature_service(feature_service)
        self.view = self.store.get_feature_view(feature_view)
        self.columns = tuple(f.name for f in self.view.features)

    def latest(self, series_id: str) -> OnlineRow | None:
        """The online row of ``series_id``, or None if the store has none."""
        response = self.store.get_online_features(
            features=self.service, entity_rows=[{JOIN_KEY: series_id}]
        ).to_dict(include_event_timestamps=True)
        stamps = [v[0] for k, v in response.items()
                  if k.endswith("__ts") and k != f"{JOIN_KEY}__ts"]
        newest = max((s for s in stamps if s), default=0)
        values = {k: v[0] for k, v in response.items() if not k.endswith("__ts") and k != JOIN_KEY}
        if not newest or all(v is None for v in values.values()):
            return None
        clean = {k: (math.nan if v is None else float(v)) for k, v in values.items()}
        return OnlineRow(series_id, pd.Timestamp(newest, unit="s", tz="UTC"), clean)

    def offline_path(self) -> Path | None:
        path = getattr(self.view.batch_source, "path", None)
        return Path(path) if path else None

    def offline_series(self) -> frozenset[str]:
        """Series ids present in the view's offline source (empty if it cannot be read)."""
        path = self.offline_path()
        if path is None or not path.exists():
            return frozenset()
        keys = pd.read_parquet(path, columns=[JOIN_KEY])[JOIN_KEY]
        return frozenset(str(k) for k in keys.unique())

    def offline_tail(self, series: Iterable[str], rows: int, columns: Sequence[str]
                     ) -> dict[str, pd.DataFrame]:
        """The last ``rows`` offline rows of each series (for priming window models)."""
        path = self.offline_path()
        if path is None or not path.exists():
            return {}
        wanted = sorted(set(series))
        frame = pd.read_parquet(
            path, columns=[JOIN_KEY, EVENT_TIMESTAMP, *columns],
            filters=[(JOIN_KEY, "in", wanted)] if wanted else None,
        )
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
        out = {}
        for key, group in frame.groupby(JOIN_KEY, sort=False):
            out[str(key)] = group.sort_values(EVENT_TIMESTAMP).tail(rows).reset_index(drop=True)
        return out


class WindowCache:
    """Recent feature rows per series for window models (see the module docstring).

    Kept as arrays (int64 event times in ns, a float64 value matrix) so adding a row is a
    small array append instead of a DataFrame concat and filter; :meth:`update` returns the
    window as the same DataFrame as before (``series_id``, ``event_timestamp`` UTC, columns).
    """

    def __init__(self, rows: int, columns: Sequence[str]) -> None:
        self.rows = rows
        self.columns = tuple(columns)
        self._series: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def prime(self, frames: dict[str, pd.DataFrame]) -> None:
        for key, frame in frames.items():
            tail = frame.tail(self.rows)
            ns = pd.DatetimeIndex(pd.to_datetime(tail[EVENT_TIMESTAMP], utc=True)
                                  ).as_unit("ns").asi8.copy()
            values = tail[list(self.columns)].to_numpy(dtype=np.float64, copy=True)
            order = np.argsort(ns, kind="stable")  # offline_tail sorts already
            self._series[key] = (ns[order], values[order])

    def update(self, row: OnlineRow, step: pd.Timedelta) -> pd.DataFrame:
        """Add ``row`` if newer than the cached ones; drop rows older than the window span."""
        when = int(row.event_timestamp.value)
        old = self._series.get(row.series_id)
        if old is not None and len(old[0]) and when <= old[0][-1]:
            keep = old[0] <= when
            return self._frame(row.series_id, old[0][keep], old[1][keep])
        get = row.values.get
        new = np.array([[get(c, math.nan) for c in self.columns]], dtype=np.float64)
        if old is None or len(old[0]) == 0:
            ns, values = np.array([when], dtype=np.int64), new
        else:
            start = when - int(step.value) * (self.rows - 1)
            first = int(np.searchsorted(old[0], start, side="left"))
            first = max(first, len(old[0]) + 1 - self.rows)
            ns = np.append(old[0][first:], when)
            values = np.concatenate([old[1][first:], new])
        self._series[row.series_id] = (ns, values)
        return self._frame(row.series_id, ns, values)

    def _frame(self, series_id: str, ns: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(values, columns=list(self.columns), copy=True)
        frame.insert(0, EVENT_TIMESTAMP, pd.to_datetime(ns, unit="ns", utc=True))
        frame.insert(0, JOIN_KEY, series_id)
        return frame
