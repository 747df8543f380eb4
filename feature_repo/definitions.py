"""Feast definitions for candlecast (thin: the objects are built by the library from params.yaml).

`feast apply` (run by `candlecast feature-store`) imports this module and registers the objects it
finds at module level.
"""

from pathlib import Path

from candlecast.config import load_params
from candlecast.feature_store.definitions import build_definitions, view_columns
from candlecast.features import feature_names

_HERE = Path(__file__).resolve().parent
_REPO_ROOT = _HERE.parent
_params = load_params(_REPO_ROOT / "params.yaml")

_objects = build_definitions(
    feature_names=view_columns(feature_names(_params.features)),  # + atr for the service
    # absolute: Feast's DuckDB offline store does not resolve paths against the repo folder
    source_path=str(_REPO_ROOT / "data" / "features" / "features.parquet"),
    service_name=_params.feature_store.feature_service,
    ttl=_params.feature_store.ttl,
)

series = _objects.entity
candle_features_source = _objects.source
candle_features = _objects.view
direction_model_features = _objects.service
