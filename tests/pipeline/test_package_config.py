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
    assert not hasattr(config, "decision")  # the policy is bundled with the model, not here
    assert config.project_root == str(tmp_path)


def test_bytecode_is_not_a_pipeline_dependency(repo_root):
    """The stages depend on src/ packages, which DVC hashes as directories: bytecode that
    imports and ``compileall`` write there must not count, or any test run would make the
    stages look changed (`.dvcignore`)."""
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        package = repo_root / "src" / "candlecast" / "features"
        for ignored in (package / "__pycache__", package / "__pycache__" / "x.cpython-311.pyc",
                        package / "stray.pyc"):
            assert repo.dvcignore.check_ignore(str(ignored)).match, ignored
        assert not repo.dvcignore.check_ignore(str(package / "engine.py")).match
