"""The operations loop end to end on a miniature real-data project, through the Prefect flows
of flows/ops.py under Prefect's test harness: a champion trained on the sample up to the replay
cut, then refresh (a replayed chunk of held-back real candles) -> drift-check (Evidently report,
verdict, MLflow) -> retrain (challenger, backtest + bootstrap decision, tags, alias) ->
backtest-report, with alerts delivered to a local receiver.

One test on purpose: the steps build on each other and running them once keeps the suite
inside its time budget.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from mini_project_path import make_mini_project  # noqa: F401 - sets sys.path
from test_aliases_and_alerts import Receiver

from candlecast.config import load_params
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import run_stage

pytestmark = pytest.mark.slow

OPS = {
    "replay": {"holdout_bars": 600, "chunk_bars": 300},
    "promotion": {"eval_bars": 300, "min_periods": 200, "n_resamples": 500, "block_size": 24},
    "drift": {"recent_bars": 300, "reference_bars": 1200, "min_rows": 100,
              "decay": {"min_rows": 100}},
}


def _flows(repo_root: Path):
    spec = importlib.util.spec_from_file_location("candlecast_ops_flows",
                                                  repo_root / "flows" / "ops.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_refresh_drift_retrain_report_under_prefect(tmp_path, repo_root, monkeypatch):
    from mlflow.tracking import MlflowClient
    from prefect.testing.utilities import prefect_test_harness

    from candlecast.ops.replay import replay_init

    # 300-bar test windows: three folds fit before the replay cut (and in the challenger's
    # shorter training set), so the policy is tuned on one fold and scored on the next
    project = make_mini_project(repo_root, tmp_path / "mini", overrides={
        "models": {"run": ["baselines"]}, "ops": OPS, "walk_forward": {"test_size": 300}})
    paths = Paths(project)
    params = load_params(paths.params)
    # the champion (model + its policy): trained on the sample up to the replay cut (what
    # `dvc repro` does with the held-back tail), through the pipeline's own stage functions
    init = replay_init(params, paths, params.ops.replay)
    for stage, arg in [("validate", None), ("features", None), ("feature-store", None),
                       ("regime", None), ("train-model", "baselines"), ("ensemble", None),
                       ("policy", None), ("backtest", None), ("register", None)]:
        run_stage(stage, params, paths, arg)
    client = MlflowClient(f"sqlite:///{project / 'mlruns.db'}")
    champion = client.get_model_version_by_alias("candlecast-ensemble", "champion")
    assert str(champion.version) == "1"
    assert pd.Timestamp(champion.tags["oof_end"]) < pd.Timestamp(init["cut"])

    hook = Receiver()
    monkeypatch.setenv("CANDLECAST_ALERT_WEBHOOK", f"{hook.url}/hook/secret")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))
    flows = _flows(repo_root)
    kw = {"root": str(project), "params_file": str(paths.params)}
    try:
        with prefect_test_harness(server_startup_timeout=300):
            refreshed = flows.refresh(**kw, replay=True)
            drift = flows.drift_check(**kw)
            retrained = flows.retrain(**kw)
            report = flows.backtest_report(**kw)
    finally:
        hook.close()

    # refresh: 300 held-back real candles per series went through every stage
    assert refreshed["ingest"]["appended"] == 600 and not refreshed["ingest"]["exhausted"]
    assert set(refreshed) == {"ingest", "validate", "features", "feature-store"}
    training = pd.read_parquet(paths.training_set)
    assert pd.to_datetime(training["event_timestamp"]).max() > pd.Timestamp(init["cut"])

    # drift check: an Evidently HTML + the JSON verdict with lineage, logged to MLflow
    assert drift["status"] == "checked" and drift["recent_rows"] >= 100
    verdict = json.loads(Path(drift["verdict"]).read_text())
    assert verdict["drifted"] == drift["drifted"]
    assert set(verdict["lineage"]) >= {"lineage.data_version", "lineage.git_commit",
                                       "lineage.params_hash", "lineage.feature_service",
                                       "champion_run_id"}
    assert Path(drift["report"]).stat().st_size > 100_000
    artifacts = {a.path for a in client.list_artifacts(drift["mlflow_run_id"], "drift")}
    assert {Path(drift["report"]).name, Path(drift["verdict"]).name} <= {
        Path(a).name for a in artifacts}

    # retrain: the challenger is registered, scored on rows neither model trained on, and
    # the decision is the authority over the alias, recorded on the version and both runs
    decision = retrained["decision"]
    challenger = client.get_model_version("candlecast-ensemble", decision["challenger_version"])
    assert challenger.tags["decision.basis"] == "deferred"  # the stage did not decide
    start = pd.Timestamp(retrained["evaluation"]["window_start_after"])
    assert start >= max(pd.Timestamp(champion.tags["oof_end"]),
                        pd.Timestamp(challenger.tags["oof_end"])) + pd.Timedelta("30min")
    assert challenger.tags["ops.decision"] == decision["outcome"]
    assert challenger.tags["ops.reason"] == decision["reason"]
    assert client.get_run(retrained["challenger_run_id"]).data.tags["ops.decision"] == \
        decision["outcome"]
    ops_run = client.get_run(retrained["ops_run_id"])
    assert ops_run.data.tags["kind"] == "ops.retrain"
    assert ops_run.data.tags["lineage.feature_service"] == "direction_model_v1"
    current = str(client.get_model_version_by_alias("candlecast-ensemble", "champion").version)
    if decision["promote"]:
        assert current == str(challenger.version)
        assert challenger.tags["ops.previous_champion"] == "1"
    else:
        assert current == "1"
        assert client.get_model_version_by_alias("candlecast-ensemble",
                                                 "challenger").version == challenger.version
        assert decision["periods"] >= 200 or "periods neither" in decision["reason"]

    # backtest report after the retrain, and the alerts
    assert report["status"] == "written" and all(Path(p).exists() for p in report["reports"])
    events = [b["event"] for b in hook.bodies]
    assert ("retrain_promoted" if decision["promote"] else "retrain_rejected") in events
    assert ("drift_detected" in events) == drift["drifted"]
