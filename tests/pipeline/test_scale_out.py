"""The zoo on a Dask cluster gives what it gives in-process (the quick profile, real data).

Two copies of one mini project share the same Feast training set; one runs the zoo stages with
the default ``compute.runner: inline``, the other with ``runner: dask`` against a LocalCluster
of two worker processes started here. Every unit (regime per fold and series, each model per
fold) must have run on a Dask worker -- asserted from the scheduler's task stream through a
Dask client -- and the outputs must be identical: per-fold metrics, out-of-fold predictions, the
ensemble's out-of-sample predictions and metrics, and the deployable ensemble bundle's
predictions on a feature window (the bundle the register step puts in MLflow). Identical, not
close: every unit is deterministic for its seed (LightGBM single-threaded, Optuna sequential,
GARCH on one BLAS thread) whatever process it runs in.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from mini_project import make_mini_project

from candlecast.config import load_params
from candlecast.feature_store.definitions import JOIN_KEY
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.prefect_server import local_prefect_server
from candlecast.pipeline.runner import run_stage, zoo_plan

pytestmark = pytest.mark.slow
PREP = ("ingest", "validate", "features", "feature-store")
MODELS = ["baselines", "lightgbm"]


def _zoo(project, compute=None):
    import yaml

    if compute is not None:
        raw = yaml.safe_load((project / "params.yaml").read_text())
        raw["compute"] = compute
        (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(project / "params.yaml")
    paths = Paths(project)
    # the zoo through the ensemble (what the served model is built from)
    plan = [(s, a) for s, a in zoo_plan(params) if s != "compare"]
    return params, {f"{s}@{a}" if a else s: run_stage(s, params, paths, a) for s, a in plan}


def _served_predictions(project, window):
    """The deployable ensemble bundle the ensemble stage saves (what gets registered)."""
    from candlecast.models.ensemble import Ensemble

    return Ensemble.load(project / "models/ensemble/serving").predict(window, rows="all")


def _same_table(a, b, name):
    """Bit-identical, timings aside."""
    read = pd.read_parquet if name.endswith(".parquet") else pd.read_csv
    left, right = read(a / name), read(b / name)
    timings = [c for c in left.columns if "seconds" in c or c == "duration_s"]
    pd.testing.assert_frame_equal(
        left.drop(columns=timings), right.drop(columns=timings), check_exact=True, obj=name
    )


def test_the_zoo_on_dask_workers_equals_the_zoo_in_process(tmp_path, repo_root, monkeypatch):
    distributed = pytest.importorskip("distributed")
    base = make_mini_project(repo_root, tmp_path / "inline", overrides={"models": {"run": MODELS}})
    params, paths = load_params(base / "params.yaml"), Paths(base)
    for stage in PREP:
        run_stage(stage, params, paths)
    other = tmp_path / "dask"
    shutil.copytree(base, other, symlinks=True)
    # the same MLflow starting point for both (the PREP stages tracked nothing); Prefect's
    # home for this test only
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))
    with local_prefect_server(log=tmp_path / "prefect.log") as api:
        monkeypatch.setenv("PREFECT_API_URL", api)
        _, inline = _zoo(base)
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            env={"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / ".prefect")},
        ) as cluster, distributed.Client(cluster) as client:
            client.get_task_stream()  # installs the scheduler's task-stream plugin
            started = pd.Timestamp.now().timestamp()
            dask_params, on_dask = _zoo(
                other, {"runner": "dask", "address": cluster.scheduler_address}
            )
            stream = client.get_task_stream(start=started)
            workers = set(client.scheduler_info()["workers"])

    # every unit ran as a Dask task on one of the cluster's workers (and both were used)
    folds = on_dask["regime"]["folds"]
    ran = pd.DataFrame([{"key": str(t["key"]), "worker": t["worker"]} for t in stream])
    fits = sum(len(dask_params.models.horizons_of(m)) for m in MODELS) * folds
    assert len(ran) == folds * 2 + fits, ran  # regime: 2 series per fold; models: horizon x fold
    assert set(ran["worker"]) == workers and len(workers) == 2

    # identical outputs
    assert dask_params.compute.runner == "dask"
    for model in MODELS:
        _same_table(base, other, f"models/zoo/{model}/fold_metrics.csv")
        _same_table(base, other, f"models/zoo/{model}/oof.parquet")
    _same_table(base, other, "models/zoo/lightgbm/trials.csv")
    _same_table(base, other, "models/zoo/regime/regime.parquet")
    _same_table(base, other, "models/ensemble/oof.parquet")
    _same_table(base, other, "models/ensemble/fold_metrics.csv")
    def without_run_ids(summary):  # each project has its own MLflow store
        return {h: {k: v for k, v in entry.items() if "run_id" not in k}
                for h, entry in summary["by_horizon"].items()}

    assert without_run_ids(inline["ensemble"]) == without_run_ids(on_dask["ensemble"])
    assert inline["ensemble"]["return_scale"] == on_dask["ensemble"]["return_scale"]

    training = pd.read_parquet(paths.training_set)
    window = training[training[JOIN_KEY] == training[JOIN_KEY].iloc[0]].tail(
        params.ensemble.window_rows).reset_index(drop=True)
    served = [_served_predictions(p, window) for p in (base, other)]
    pd.testing.assert_frame_equal(served[0], served[1], check_exact=True)
    assert served[0]["prob_up"].between(0, 1).all() and len(served[0]) == len(window)
