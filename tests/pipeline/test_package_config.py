"""The service's config comes from params.yaml: the `serving:` section plus the features,
feature service, MLflow store and risk engine of their own sections (one truth)."""

from __future__ import annotations

from candlecast.config import load_params
from candlecast.pipeline.package_stage import serving_config
from candlecast.pipeline.paths import Paths


def test_serving_config_takes_shared_values_from_their_own_sections(repo_root, tmp_path):
    params = load_params(repo_root / "params.yaml")
    config = serving_config(params, Paths(tmp_path))
    assert config.model_uri == params.serving.model_uri == "models:/candlecast-ensemble@champion"
    assert config.fallback_model_uris == ("models:/candlecast-lightgbm/latest",)
    assert config.features == params.features
    assert config.feature_service == params.feature_store.feature_service
    assert config.tracking_uri == params.mlflow.tracking_uri
    assert config.risk == params.risk
    assert config.decision.band == params.backtest.band  # the service acts as the backtest did
    assert config.project_root == str(tmp_path)
