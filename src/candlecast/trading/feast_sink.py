"""Writing each closed candle's features to the Feast online store (the ``signal`` path's input).

The row goes to the feature view ``candle_features`` of ``feature_repo/`` with the same
conventions as the batch pipeline (:func:`candlecast.feature_store.store.to_feast_table`): entity
key ``series_id`` = ``exchange:SYMBOL:timeframe``, ``event_timestamp`` = the candle's CLOSE time
(when its features became known). The trader takes any :class:`FeatureSink`, so unit tests can
pass a list-backed fake and skip Feast altogether.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

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
    """:class:`FeatureSink` that calls ``FeatureStore.write_to_online_store`` (Feast repo at
    ``repo_path``, already applied by the pipeline's feature-store stage)."""

    def __init__(self, repo_path: str | Path, feature_names: Sequence[str],
                 store: Any | None = None) -> None:
        from candlecast.feature_store.definitions import FEATURE_VIEW

        if store is None:
            from feast import FeatureStore

            store = FeatureStore(repo_path=str(repo_path))
        self.store = store
        self.view = FEATURE_VIEW
        self.names = list(feature_names)

    def __repr__(self) -> str:
        return f"FeastOnlineSink(view={self.view!r}, features={len(self.names)})"

    def write(self, series: SeriesId, bar: Bar, features: Mapping[str, float]) -> None:
        self.store.write_to_online_store(self.view, feast_row(series, bar, features, self.names))
