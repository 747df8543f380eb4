"""The whole pipeline, stage by stage, on a miniature real-data project: outputs, Feast, MLflow."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mini_project import make_mini_project

from candlecast.config import load_params
from candlecast.data.store import CandleStore
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.feature_store.store import online_features, open_store
from candlecast.features import feature_names
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import AFTER_ZOO, STAGES, run_stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ran(tmp_path_factory, repo_root):
    """The hold-out pipeline up to the quick LightGBM look (the stages after the zoo -- policy,
    backtest, register, package -- are exercised in test_zoo_pipeline.py)."""
    project = make_mini_project(repo_root, tmp_path_factory.mktemp("mini"))
    paths = Paths(project)
    params = load_params(paths.params)
    results = {stage: run_stage(stage, params, paths) for stage in STAGES
               if stage not in AFTER_ZOO}
    return paths, params, results


def test_ingest_and_validate_keep_every_real_row(ran):
    paths, params, results = ran
    for series in params.ingest.series:
        raw = CandleStore(paths.raw).read(series)
        valid = CandleStore(paths.validated).read(series)
        assert len(raw) == 3000
        summary = results["validate"]["series"][series.key]
        assert len(valid) + summary["bad_rows"] == len(raw)
    assert (paths.validation_reports / "data_docs" / "index.html").exists()
    assert json.loads((paths.metrics / "validation.json").read_text())


def test_feature_table_has_close_time_event_timestamps(ran):
    paths, params, _ = ran
    features = pd.read_parquet(paths.features)
    step = pd.Timedelta(minutes=30)
    assert (features[EVENT_TIMESTAMP] - features["timestamp"] == step).all()
    assert set(feature_names(params.features)) <= set(features.columns)


def test_training_set_is_the_point_in_time_join_of_the_feature_rows(ran):
    paths, params, _ = ran
    names = feature_names(params.features)
    dataset = pd.read_parquet(paths.training_set)
    features = pd.read_parquet(paths.features)
    merged = dataset.merge(
        features[[JOIN_KEY, EVENT_TIMESTAMP, *names]],
        on=[JOIN_KEY, EVENT_TIMESTAMP],
        suffixes=("", "_offline"),
    )
    assert len(merged) == len(dataset) == len(features)
    for name in names:
        np.testing.assert_allclose(merged[name], merged[f"{name}_offline"], rtol=0, atol=0)


def test_online_features_of_the_latest_candle_equal_its_offline_row(ran):
    paths, params, _ = ran
    names = feature_names(params.features)
    store = open_store(paths.feature_repo)
    keys = [s.key for s in params.ingest.series]
    online = online_features(store, keys, params.feature_store.feature_service).set_index(JOIN_KEY)
    offline = pd.read_parquet(paths.features)
    latest = offline.sort_values(EVENT_TIMESTAMP).groupby(JOIN_KEY).tail(1).set_index(JOIN_KEY)
    assert sorted(online.index) == sorted(keys)
    for key in keys:
        np.testing.assert_allclose(
            online.loc[key, names].to_numpy(float),
            latest.loc[key, names].to_numpy(float),
            rtol=1e-12,
        )


def test_training_is_tracked_in_mlflow_with_model_signature_and_lineage(ran):
    paths, params, results = ran
    run_id = results["train"]["mlflow_run_id"]
    mlflow.set_tracking_uri(f"sqlite:///{paths.root / 'mlruns.db'}")
    run = mlflow.get_run(run_id)
    assert run.data.tags["model_family"] == "lightgbm"
    assert run.data.tags["lineage.params_hash"] == params.hash()
    assert run.data.params["label"] == "label_up_1"
    assert "test_auc" in run.data.metrics and "baseline_base_rate_test_log_loss" in run.data.metrics
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    names = feature_names(params.features)
    assert [c.name for c in model.metadata.get_input_schema().inputs] == names
    dataset = pd.read_parquet(paths.training_set)
    probs = model.predict(dataset[names].head(10))
    assert np.all((np.asarray(probs) >= 0) & (np.asarray(probs) <= 1))
    versions = mlflow.MlflowClient().search_model_versions(
        f"name='{params.mlflow.registered_model}'"
    )
    assert any(v.run_id == run_id for v in versions)


def test_evaluation_reports_out_of_sample_metrics_beside_the_baseline(ran):
    paths, _, results = ran
    metrics = json.loads((paths.metrics / "evaluate.json").read_text())
    predictions = pd.read_parquet(paths.lightgbm_dir / "predictions.parquet")
    test_start = pd.Timestamp(results["train"]["boundaries"]["test_start"])
    assert metrics["test_rows"] == (predictions["split"] == "test").sum()
    assert predictions.loc[predictions["split"] != "test", EVENT_TIMESTAMP].max() < test_start
    assert metrics["base_rate"]["auc"] is None or metrics["base_rate"]["auc"] == 0.5
    for key in ("log_loss", "accuracy", "auc"):
        assert 0 < metrics["lightgbm"][key] < 1
    for plot in (
        "calibration.csv",
        "feature_importance.csv",
        "calibration.png",
        "feature_importance.png",
    ):
        assert (paths.plots / plot).stat().st_size > 0


def test_a_rerun_with_the_same_params_gives_the_same_metrics(ran):
    paths, params, _ = ran
    first = json.loads((paths.metrics / "evaluate.json").read_text())
    run_stage("train", params, paths)
    run_stage("evaluate", params, paths)
    assert json.loads((paths.metrics / "evaluate.json").read_text()) == first


