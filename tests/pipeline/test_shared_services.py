"""The quick pipeline on shared services started by the project's own scripts.

``services/up.sh`` starts PostgreSQL and Redis from the Debian packages' binaries and the MLflow
tracking server on PostgreSQL (free ports, a private data folder); the environment of
``services/services.env`` with ``CANDLECAST_PROFILE`` is the one switch. Then: the runs and the
registered model live in the MLflow server (nothing in a local ``mlruns.db``), the Optuna
studies in PostgreSQL, the Feast online store in Redis (no SQLite online store file); the
trader's sink writes a fresh candle's features into Redis and the signal service's ``/signal``
logic answers from that row. Skipped, with the reason, where the server binaries are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from mini_project import make_mini_project

from candlecast.config import load_params
from candlecast.data.schema import SeriesId
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.prefect_server import free_port, local_prefect_server
from candlecast.pipeline.runner import run_stage, zoo_plan

pytestmark = pytest.mark.slow
PG = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
MISSING = [name for name, found in (("postgresql (pg_ctl)", PG),
                                    ("redis-server", shutil.which("redis-server"))) if not found]
if MISSING:
    pytest.skip(f"needs {' and '.join(MISSING)} (apt-get install postgresql redis-server)",
                allow_module_level=True)


def _script(repo_root: Path, name: str, env: dict[str, str]) -> None:
    done = subprocess.run(["bash", str(repo_root / "services" / name)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"services/{name}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def services(repo_root):
    """``services/up.sh`` on free ports; the environment ``services.env`` gives, then down."""
    folder = tempfile.mkdtemp(prefix="candlecast-services-", dir="/tmp")
    os.chmod(folder, 0o755)  # the postgres user runs the server (root may not)
    env = {**os.environ, "CANDLECAST_SERVICES_DIR": folder,
           "CANDLECAST_PG_PORT": str(free_port()), "CANDLECAST_REDIS_PORT": str(free_port()),
           "CANDLECAST_MLFLOW_PORT": str(free_port()), "VENV_BIN": str(Path(sys.executable).parent),
           "CANDLECAST_PROFILE": str(repo_root / "profiles" / "services.yaml")}
    shown = subprocess.run(
        ["bash", "-c", f"set -a; . {repo_root / 'services' / 'services.env'}; env -0"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in shown.split("\0") if "=" in line)
    try:
        _script(repo_root, "up.sh", env)
        yield env
    finally:
        _script(repo_root, "down.sh", env)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_quick_pipeline_on_postgres_mlflow_and_redis(services, tmp_path, repo_root,
                                                         monkeypatch):
    import mlflow
    import optuna
    import redis
    from mlflow.tracking import MlflowClient

    for name in ("CANDLECAST_PROFILE", "CANDLECAST_MLFLOW_URI", "CANDLECAST_OPTUNA_STORAGE",
                 "CANDLECAST_REDIS"):
        monkeypatch.setenv(name, services[name])
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))
    project = make_mini_project(repo_root, tmp_path / "proj",
                                overrides={"models": {"run": ["baselines", "lightgbm"]}})
    params, paths = load_params(project / "params.yaml"), Paths(project)
    assert params.mlflow.tracking_uri == services["CANDLECAST_MLFLOW_URI"]
    assert params.models.lightgbm.tuning.storage.startswith("postgresql+psycopg://")
    assert params.feature_store.repo_config == "feature_store.redis.yaml"
    assert params.compute.runner == "dask"

    with local_prefect_server(log=tmp_path / "prefect.log") as api:
        monkeypatch.setenv("PREFECT_API_URL", api)
        for stage in ("ingest", "validate", "features", "feature-store", "train"):
            run_stage(stage, params, paths)
        done = {f"{s}@{a}" if a else s: run_stage(s, params, paths, a)
                for s, a in zoo_plan(params) if s != "compare"}

    # MLflow: the server (PostgreSQL behind it) has the runs and the registered model
    assert not (project / "mlruns.db").exists()
    client = MlflowClient(tracking_uri=services["CANDLECAST_MLFLOW_URI"])
    versions = client.search_model_versions(f"name = '{params.mlflow.registered_model}'")
    assert [v.version for v in versions] == ["1"]
    zoo_run_id = done["train-model@lightgbm"]["mlflow_run_ids"]["lightgbm@h1"]
    for run_id in (versions[0].run_id, zoo_run_id):
        run = client.get_run(run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
        assert client.list_artifacts(run_id)
    parent = client.get_run(done["regime"]["mlflow_run_id"]).data.tags["mlflow.parentRunId"]
    assert parent == done["ensemble"]["mlflow_parent_run_id"]  # one pipeline run on the server
    # Optuna: every fold's study of every horizon in PostgreSQL
    studies = set(optuna.get_all_study_names(services["CANDLECAST_OPTUNA_STORAGE"]))
    assert {f"lightgbm-h{h}-fold{k}" for h in params.models.horizons_of("lightgbm")
            for k in range(done["regime"]["folds"])} <= studies
    # Feast: the online store is Redis (no SQLite file was made)
    assert not list((project / "data").glob("**/online_store.db"))
    host, port = services["CANDLECAST_REDIS"].split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() == len(params.ingest.symbols)

    # the trader writes a fresh candle into Redis; /signal answers from that row
    from candlecast.feature_store.definitions import view_columns
    from candlecast.features import feature_names
    from candlecast.pipeline.package_stage import serving_config
    from candlecast.serving.schemas import SeriesRequest
    from candlecast.serving.server import SignalServer
    from candlecast.trading.candles import Bar
    from candlecast.trading.feast_sink import FeastOnlineSink

    names = view_columns(feature_names(params.features))
    features = pd.read_parquet(paths.features)
    last = features[features["symbol"] == "BTC/USD"].iloc[-1]
    series = SeriesId("bitfinex", "BTC/USD", "30m")
    step = int(series.step.value)
    opened = (pd.Timestamp.now(tz="UTC").value // step - 1) * step  # the last closed candle
    sink = FeastOnlineSink(paths.feature_repo, names, config_file=params.feature_store.repo_config)
    assert sink.journal is None  # not a SQLite store
    # the sink stores features and the candle's time (its prices are not part of the view)
    sink.write(series, Bar(opened, 1.0, 1.0, 1.0, 1.0, 1.0), {n: float(last[n]) for n in names})
    mlflow.set_tracking_uri(services["CANDLECAST_MLFLOW_URI"])
    config = serving_config(params, paths).model_copy(update={"load_retry_seconds": None})
    assert config.feature_store_config == "feature_store.redis.yaml"
    server = SignalServer(config)
    server.load()
    answer = server.signal(SeriesRequest(exchange="bitfinex", symbol="BTC/USD", timeframe="30m"))
    assert answer.status == "ok" and 0 < answer.prob_up < 1
    assert pd.Timestamp(answer.feature_timestamp) == pd.Timestamp(opened + step, tz="UTC")
    # the model through the MLflow server's registry (artifacts downloaded over HTTP): the
    # hold-out LightGBM, the service's reported fallback while the zoo registers no champion
    assert answer.model_version == f"{params.mlflow.registered_model}/1"
