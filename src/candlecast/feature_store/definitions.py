"""Feast object definitions for candle features, built from the feature list.

The feature table has one row per closed candle and series. Its ``event_timestamp`` is the
candle's CLOSE time (open time + timeframe): that is when the features become known, so a
point-in-time join at decision time ``t`` can only see candles that had closed by ``t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

ENTITY_NAME = "series"
JOIN_KEY = "series_id"
EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
FEATURE_VIEW = "candle_features"


@dataclass(frozen=True)
class FeastObjects:
    entity: Entity
    source: FileSource
    view: FeatureView
    service: FeatureService

    def all(self) -> list[object]:
        return [self.entity, self.source, self.view, self.service]


#: auxiliary feature columns also stored in the view (not model inputs): the signal service
#: reads the absolute ``atr`` online for its stop/size suggestions
VIEW_AUX_COLUMNS: tuple[str, ...] = ("atr",)


def view_columns(feature_names: Sequence[str]) -> list[str]:
    """The view's columns: the model features, then :data:`VIEW_AUX_COLUMNS`."""
    return [*feature_names, *(c for c in VIEW_AUX_COLUMNS if c not in feature_names)]


def build_definitions(
    feature_names: Sequence[str],
    source_path: str,
    service_name: str,
    ttl: timedelta,
    int_features: Sequence[str] = (),
) -> FeastObjects:
    """Entity ``series`` (key ``series_id`` = ``exchange:SYMBOL:timeframe``), a FileSource on the
    features Parquet, one feature view with every feature, and the model's FeatureService."""
    entity = Entity(
        name=ENTITY_NAME,
        join_keys=[JOIN_KEY],
        value_type=ValueType.STRING,
        description="One candle series: exchange, unified symbol and timeframe.",
    )
    source = FileSource(
        name="candle_features_source",
        path=source_path,
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
        description="Features of closed candles, written by `candlecast features`.",
    )
    schema = [
        Field(name=name, dtype=Int64 if name in int_features else Float64) for name in feature_names
    ]
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=[entity],
        ttl=ttl,
        schema=schema,
        source=source,
        online=True,
        description="Candle features (one definition, batch and incremental).",
        tags={"owner": "candlecast"},
    )
    service = FeatureService(
        name=service_name, features=[view], description="Features the direction model reads."
    )
    return FeastObjects(entity, source, view, service)
