"""The package stage: bundle the served model into a copy of bentos/, `bentoml build` it into
a private BentoML store, and load the bundled model the way the bento will."""

from __future__ import annotations

import json
import shutil

import pytest
from serving_harness import candles_payload

from candlecast.serving.config import ServingConfig, load_serving_config
from candlecast.serving.package import package_service
from candlecast.serving.schemas import PredictRequest
from candlecast.serving.server import SignalServer

pytestmark = pytest.mark.slow


def test_package_bundles_the_model_and_builds_a_bento(serving_env, repo_root, tmp_path):
    bento_dir = tmp_path / "bentos"
    bento_dir.mkdir()
    for name in ("service.py", "bentofile.yaml"):
        shutil.copy(repo_root / "bentos" / name, bento_dir / name)
    config = ServingConfig(
        project_root=str(serving_env.root),
        tracking_uri=f"sqlite:///{serving_env.root / 'mlflow' / 'mlruns.db'}",
        feature_repo=str(serving_env.root / "feature_repo"),
        load_retry_seconds=None,
    )
    summary = package_service(config, repo_root, bento_dir=bento_dir, out_dir=tmp_path / "out",
                              env={"BENTOML_HOME": str(tmp_path / "bentoml_home")})
    assert summary == json.loads((tmp_path / "out" / "package.json").read_text())
    assert summary["bento_tag"].startswith("candlecast_signal:")
    assert summary["model_version"] == "candlecast-lightgbm/1"
    assert summary["model_source"] == "fallback"
    assert summary["lineage"]["lineage.params_hash"] == "0123456789ab"
    version = summary["bento_tag"].split(":")[1]
    built = tmp_path / "bentoml_home" / "bentos" / "candlecast_signal" / version
    for part in ("src/service.py", "src/serving_config.json", "src/model/MLmodel",
                 "src/model/candlecast_model.json", "env/python/requirements.txt"):
        assert (built / part).exists(), part
    assert "lightgbm==" in (built / "env" / "python" / "requirements.txt").read_text()

    # the bento's own config: the bundled model, found relative to the config file
    bundled = load_serving_config({}, default_dir=built / "src")
    assert bundled.model_uri == str(built / "src" / "model")
    server = SignalServer(bundled)
    server.load()
    assert server.ready, server.load_error
    meta = server.metadata()
    assert (meta.model_version, meta.model_source) == ("candlecast-lightgbm/1", "bundled")
    assert meta.fallback_reason.startswith("packaged as fallback")
    assert meta.mlflow_run_id == serving_env.run_id
    assert meta.training_data_version == "abc123def456"
    candles = serving_env.fresh_candles.iloc[-200:].reset_index(drop=True)
    request = PredictRequest.model_validate_json(json.dumps(candles_payload(candles)))
    from serving_harness import batch_prob

    assert server.predict(request).prob_up == pytest.approx(batch_prob(serving_env, candles),
                                                            abs=1e-9)
