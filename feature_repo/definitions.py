"""Feast definitions for candlecast (thin: the objects are built by the library from params.yaml).

`feast apply` (run by `candlecast feature-store`) imports this module and registers the objects it
finds at module level. With `cross_section.enabled` (the portfolio workspace's params) the
cross-sectional views and the pooled model's service are registered too.
"""

from pathlib import Path

from candlecast.config import load_params
from candlecast.feature_store.definitions import (
    build_cross_section_definitions,
    build_definitions,
    view_columns,
)
from candlecast.features import feature_names
from candlecast.features.cross_section import coin_feature_names, universe_feature_names

_HERE = Path(__file__).resolve().parent
_REPO_ROOT = _HERE.parent
_params = load_params(_REPO_ROOT / "params.yaml")
_FEATURES = _REPO_ROOT / "data" / "features"

_objects = build_definitions(
    feature_names=view_columns(feature_names(_params.features)),  # + atr for the service
    # absolute: Feast's DuckDB offline store does not resolve paths against the repo folder
    source_path=str(_FEATURES / "features.parquet"),
    service_name=_params.feature_store.feature_service,
    ttl=_params.feature_store.ttl,
)

series = _objects.entity
candle_features_source = _objects.source
candle_features = _objects.view
direction_model_features = _objects.service

if _params.cross_section.enabled:
    _xs = build_cross_section_definitions(
        _objects,
        coin_features=coin_feature_names(_params.cross_section),
        universe_features=universe_feature_names(_params.cross_section),
        coin_source_path=str(_FEATURES / "cross_section.parquet"),
        universe_source_path=str(_FEATURES / "universe.parquet"),
        service_name=_params.cross_section.feature_service,
        ttl=_params.feature_store.ttl,
    )
    universe = _xs.entity
    coin_cross_section_source = _xs.coin_source
    coin_cross_section = _xs.coin_view
    universe_features_source = _xs.universe_source
    universe_features = _xs.universe_view
    portfolio_model_features = _xs.service
