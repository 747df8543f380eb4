"""Writing each closed candle's features to the Feast online store (the ``signal`` path's input).

The row goes to the feature view ``candle_features`` of ``feature_repo/`` with the same
conventions as the batch pipeline (:func:`candlecast.feature_store.store.to_feast_table`): entity
key ``series_id`` = ``exchange:SYMBOL:timeframe``, ``event_timestamp`` = the candle's CLOSE time
(when its features became known). The trader takes any :class:`FeatureSink`, so unit tests can
pass a list-backed fake and skip Feast altogether.

:class:`FeastOnlineSink` writes the one row straight through the provider's
``online_write_batch`` with the protobuf values built directly: what Feast 0.67's
``write_to_online_store`` does for a plain feature view (same checks, same ``ValueProto``
conversion, same entity key and timestamps) minus the one-row DataFrame -> Arrow -> numpy
round trip, which cost ~35-40 ms per candle. The online read afterwards is the same as with
``write_to_online_store`` (tested); ``direct=False`` keeps the DataFrame path. A SQLite online
store is switched to WAL with ``synchronous=NORMAL`` (``fast_commits``, see
:func:`_fast_commits`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from candlecast.data.schema import SeriesId
from candlecast.trading.candles import Bar


class FeatureSink(Protocol):
    def write(self, series: SeriesId, bar: Bar, features: Mapping[str, float]) -> None:
        """Store the features of ``bar`` (a closed candle of ``series``)."""
        ...


def feast_row(series: SeriesId, bar: Bar, features: Mapping[str, float],
              names: Sequence[str]) -> pd.DataFrame:
    """One-row frame in the layout of the ``candle_features`` view."""
    from candlecast.feature_store.definitions import (
        CREATED_TIMESTAMP,
        EVENT_TIMESTAMP,
        JOIN_KEY,
    )

    close = pd.Timestamp(bar.ts + int(series.step.value), tz="UTC")
    data: dict[str, Any] = {JOIN_KEY: [series.key], EVENT_TIMESTAMP: [close],
                            CREATED_TIMESTAMP: [close]}
    for name in names:
        data[name] = [float(features[name])]
    frame = pd.DataFrame(data)
    for col in (EVENT_TIMESTAMP, CREATED_TIMESTAMP):
        frame[col] = frame[col].astype("datetime64[us, UTC]")
    return frame


class FeastOnlineSink:
    """:class:`FeatureSink` writing to the online store of the Feast repo at ``repo_path``
    (already applied by the pipeline's feature-store stage); see the module docstring."""

    def __init__(self, repo_path: str | Path, feature_names: Sequence[str],
                 store: Any | None = None, direct: bool = True,
                 fast_commits: bool = True, config_file: str = "feature_store.yaml") -> None:
        from candlecast.feature_store.definitions import FEATURE_VIEW

        if store is None:
            from feast import FeatureStore

            store = FeatureStore(repo_path=str(repo_path),
                                 fs_yaml_file=Path(repo_path) / config_file)
        self.store = store
        self.view = FEATURE_VIEW
        self.names = list(feature_names)
        self.direct = direct
        self._plan: _DirectWrite | None = None
        self.journal = _fast_commits(store) if fast_commits else None

    def __repr__(self) -> str:
        return f"FeastOnlineSink(view={self.view!r}, features={len(self.names)})"

    def write(self, series: SeriesId, bar: Bar, features: Mapping[str, float]) -> None:
        if not self.direct:
            self.store.write_to_online_store(self.view, feast_row(series, bar, features,
                                                                  self.names))
            return
        if self._plan is None:
            self._plan = _DirectWrite(self.store, self.view, self.names)
        self._plan.write(series, bar, features)


def _fast_commits(store: Any) -> str | None:
    """A SQLite online store in WAL mode with ``synchronous=NORMAL``: a commit appends to the
    write-ahead log without waiting for the disk (fsync at checkpoints only), and the signal
    service's reads no longer wait for the trader's writes (nor the reverse). The online store
    is a cache of features derived from candles the trader and the pipeline keep elsewhere: a
    power cut can lose its last commits, a crash of the process cannot, and neither corrupts
    it (the trader's own state database stays ``synchronous=FULL``). Returns the journal mode
    now in force, None for another online store type."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    online = store._get_provider().online_store
    if not isinstance(online, SqliteOnlineStore):
        return None
    conn = online._get_conn(store.config)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    conn.execute("PRAGMA synchronous=NORMAL")
    return str(mode)


class _DirectWrite:
    """``write_to_online_store`` of one row of a plain feature view, from python values.

    Mirrors Feast 0.67 (``FeatureStore.write_to_online_store`` -> ``ingest_df`` ->
    ``_convert_arrow_fv_to_proto`` -> ``online_write_batch``): each feature converted by
    ``python_values_to_proto_values`` from the float64 array Arrow would hand it, the entity
    key from the string join key, event/created timestamps as naive UTC datetimes at
    microsecond precision, a row whose features are all missing skipped with Feast's warning.
    """

    def __init__(self, store: Any, view_name: str, names: Sequence[str]) -> None:
        from feast import FeatureView

        from candlecast.feature_store.definitions import CREATED_TIMESTAMP, EVENT_TIMESTAMP

        views = {v.name: v for v in store.list_all_feature_views(True)}
        view = views.get(view_name)
        if view is None:
            from feast.errors import FeatureViewNotFoundException

            raise FeatureViewNotFoundException(view_name, store.project)
        if type(view) is not FeatureView or view.batch_source is None:
            raise ValueError(f"direct online writes support plain feature views; {view_name!r} "
                             f"is a {type(view).__name__} (use direct=False)")
        columns = {*names, EVENT_TIMESTAMP, CREATED_TIMESTAMP}
        missing = [f.name for f in view.features if f.name not in columns]
        if missing:
            raise ValueError(f"Column {missing[0]} not found in table")
        source = view.batch_source
        if source.timestamp_field not in (EVENT_TIMESTAMP,) or (
                source.created_timestamp_column not in ("", None, CREATED_TIMESTAMP)):
            raise ValueError("direct online writes expect the view's timestamps to be "
                             f"{EVENT_TIMESTAMP}/{CREATED_TIMESTAMP}")
        self.store = store
        self.view = view
        self.names = list(names)
        self.provider = store._get_provider()
        self.features = [(f.name, f.dtype.to_value_type()) for f in view.features]
        self.join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
        self.with_created = bool(source.created_timestamp_column)

    def write(self, series: SeriesId, bar: Bar, features: Mapping[str, float]) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.type_map import python_values_to_proto_values

        from candlecast.feature_store.definitions import JOIN_KEY

        given = {name: float(features[name]) for name in self.names}  # as feast_row reads
        values = {name: given[name] for name, _ in self.features}
        if all(v != v for v in values.values()):
            warnings.warn("Cannot write dataframe with empty feature columns to online store",
                          stacklevel=2)
            return
        row = {
            name: python_values_to_proto_values(np.array([values[name]]), kind)[0]
            for name, kind in self.features
        }
        entity_values = {}
        for key, kind in self.join_keys.items():
            if key != JOIN_KEY:
                raise ValueError(f"unexpected join key {key!r} (expected {JOIN_KEY!r})")
            entity_values[key] = python_values_to_proto_values(
                np.array([series.key], dtype=object), kind)[0]
        entity = EntityKeyProto(join_keys=list(self.join_keys),
                                entity_values=list(entity_values.values()))
        close = np.datetime64(int(bar.ts + int(series.step.value)), "ns").astype("datetime64[us]")
        when = pd.Timestamp(close).to_pydatetime()
        self.provider.online_write_batch(
            self.store.config, self.view,
            [(entity, row, when, when if self.with_created else None)], progress=None,
        )
