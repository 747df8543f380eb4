"""Feast reads for ``/signal``: the latest online row of a series, and (for window models) a
per-series window of recent rows.

The online read goes straight to the provider's ``online_read`` (one SQLite query) with the
entity key and the service's feature names prepared once: what ``get_online_features`` does for
a feature service of plain feature views, minus its per-call registry lookups and response
building (~2 ms of the ~2.5 ms a read cost); ``direct=False`` keeps ``get_online_features``.
Both give the same :class:`OnlineRow` (tested).

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

    def __init__(self, repo_path: Path, feature_service: str, feature_view: str,
                 direct: bool = True, config_file: str = "feature_store.yaml") -> None:
        from feast import FeatureStore

        if not (repo_path / config_file).exists():
            raise FileNotFoundError(f"no Feast repository ({config_file}) in {repo_path}")
        self.store = FeatureStore(repo_path=str(repo_path), fs_yaml_file=repo_path / config_file)
        self.service = self.store.get_feature_service(feature_service)
        self.view = self.store.get_feature_view(feature_view)
        self.columns = tuple(f.name for f in self.view.features)
        self._direct = _DirectRead(self.store, self.service) if direct else None

    def latest(self, series_id: str) -> OnlineRow | None:
        """The online row of ``series_id``, or None if the store has none."""
        if self._direct is not None:
            newest, values = self._direct.read(series_id)
        else:
            newest, values = self._read_service(series_id)
        if newest is None or all(v is None for v in values.values()):
            return None
        clean = {k: (math.nan if v is None else float(v)) for k, v in values.items()}
        return OnlineRow(series_id, newest, clean)

    def _read_service(self, series_id: str) -> tuple[pd.Timestamp | None, dict[str, object]]:
        response = self.store.get_online_features(
            features=self.service, entity_rows=[{JOIN_KEY: series_id}]
        ).to_dict(include_event_timestamps=True)
        stamps = [v[0] for k, v in response.items()
                  if k.endswith("__ts") and k != f"{JOIN_KEY}__ts"]
        newest = max((s for s in stamps if s), default=0)
        values = {k: v[0] for k, v in response.items() if not k.endswith("__ts") and k != JOIN_KEY}
        return (pd.Timestamp(newest, unit="s", tz="UTC") if newest else None), values

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


class _DirectRead:
    """``get_online_features(service, [{series_id: ...}])`` for ONE entity as one provider
    ``online_read`` per feature view of the service (the views and names resolved once)."""

    def __init__(self, store: object, service: object) -> None:
        from feast import FeatureView

        self.config = store.config  # type: ignore[attr-defined]
        self.provider = store._get_provider()  # type: ignore[attr-defined]
        self.reads: list[tuple[object, list[str]]] = []
        for projection in service.feature_view_projections:  # type: ignore[attr-defined]
            view = store.get_feature_view(projection.name)  # type: ignore[attr-defined]
            if type(view) is not FeatureView:
                raise ValueError(f"direct online reads support plain feature views; "
                                 f"{projection.name!r} is a {type(view).__name__}")
            keys = [e.name for e in view.entity_columns]
            if keys != [JOIN_KEY]:
                raise ValueError(f"view {view.name!r} is keyed by {keys}, expected [{JOIN_KEY!r}]")
            self.reads.append((view, [f.name for f in projection.features]))

    def read(self, series_id: str) -> tuple[pd.Timestamp | None, dict[str, object]]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto
        from feast.type_map import feast_value_type_to_python_type

        key = EntityKeyProto(join_keys=[JOIN_KEY],
                             entity_values=[ValueProto(string_val=series_id)])
        values: dict[str, object] = {}
        newest = None
        for view, names in self.reads:
            [(stamp, row)] = self.provider.online_read(  # type: ignore[attr-defined]
                config=self.config, table=view, entity_keys=[key], requested_features=names)
            for name in names:
                proto = row.get(name) if row else None
                values[name] = None if proto is None else feast_value_type_to_python_type(proto)
            if stamp is not None and row:
                # whole seconds, as get_online_features reports event timestamps
                when = pd.Timestamp(int(stamp.timestamp()), unit="s", tz="UTC")
                newest = when if newest is None else max(newest, when)
        return newest, values


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
        return self._frame(row.series_id, *self.update_arrays(row, step))

    def update_arrays(self, row: OnlineRow, step: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`update` as arrays: int64 event times (ns, ascending) and the
        ``(len, len(columns))`` float64 values, without building a DataFrame. The arrays are
        the cache's own (or views of them): read them, do not write to them."""
        when = int(row.event_timestamp.value)
        old = self._series.get(row.series_id)
        if old is not None and len(old[0]) and when <= old[0][-1]:
            if when == old[0][-1]:
                return old
            keep = old[0] <= when
            return old[0][keep], old[1][keep]
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
        return ns, values

    def _frame(self, series_id: str, ns: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(values, columns=list(self.columns), copy=True)
        frame.insert(0, EVENT_TIMESTAMP, pd.to_datetime(ns, unit="ns", utc=True))
        frame.insert(0, JOIN_KEY, series_id)
        return frame
