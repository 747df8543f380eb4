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


UNIVERSE_ENTITY = "universe"
UNIVERSE_KEY = "universe_id"
COIN_VIEW = "coin_cross_section"
UNIVERSE_VIEW = "universe_features"


@dataclass(frozen=True)
class CrossSectionObjects:
    """The portfolio path's Feast objects: one view per level (the coin's place in the
    universe keyed by series, the universe's own features keyed by universe) and the pooled
    model's FeatureService over the candle view and both."""

    entity: Entity
    coin_source: FileSource
    coin_view: FeatureView
    universe_source: FileSource
    universe_view: FeatureView
    service: FeatureService

    def all(self) -> list[object]:
        return [self.entity, self.coin_source, self.coin_view, self.universe_source,
                self.universe_view, self.service]


def build_cross_section_definitions(
    base: FeastObjects,
    coin_features: Sequence[str],
    universe_features: Sequence[str],
    coin_source_path: str,
    universe_source_path: str,
    service_name: str,
    ttl: timedelta,
) -> CrossSectionObjects:
    """Entity ``universe`` (key ``universe_id`` = ``exchange:timeframe:SYM1,SYM2,...``), the
    ``coin_cross_section`` view (keyed by the candle view's ``series`` entity) and the
    ``universe_features`` view, both on the Parquet the ``cross-section`` stage writes, and the
    FeatureService ``service_name`` over the candle view and both (point in time: each row's
    event timestamp is the close of the bar it describes)."""
    universe = Entity(name=UNIVERSE_ENTITY, join_keys=[UNIVERSE_KEY],
                      value_type=ValueType.STRING,
                      description="A universe of coins traded as one book.")
    coin_source = FileSource(name="coin_cross_section_source", path=coin_source_path,
                             timestamp_field=EVENT_TIMESTAMP,
                             created_timestamp_column=CREATED_TIMESTAMP,
                             description="Each coin against the universe at the bar.")
    universe_source = FileSource(name="universe_features_source", path=universe_source_path,
                                 timestamp_field=EVENT_TIMESTAMP,
                                 created_timestamp_column=CREATED_TIMESTAMP,
                                 description="The universe's basket-level features.")
    coin_view = FeatureView(
        name=COIN_VIEW, entities=[base.entity], ttl=ttl,
        schema=[Field(name=n, dtype=Float64) for n in coin_features], source=coin_source,
        online=True, description="Rank, z-score, relative return, beta and residual of a coin "
        "within its universe (point in time).", tags={"owner": "candlecast"})
    universe_view = FeatureView(
        name=UNIVERSE_VIEW, entities=[universe], ttl=ttl,
        schema=[Field(name=n, dtype=Float64) for n in universe_features],
        source=universe_source, online=True,
        description="Market return, dispersion, breadth and volatility of the universe.",
        tags={"owner": "candlecast"})
    service = FeatureService(name=service_name, features=[base.view, coin_view, universe_view],
                             description="Features the pooled cross-sectional model reads.")
    return CrossSectionObjects(universe, coin_source, coin_view, universe_source,
                               universe_view, service)
