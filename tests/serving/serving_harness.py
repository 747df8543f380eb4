"""Build a tiny but real serving environment in a folder, and run ``bentoml serve`` on it.

* a LightGBM direction model trained on real BTC 30m features, logged with the mlflow.lightgbm
  flavour (signature = the 36 features) and registered as ``candlecast-lightgbm`` in a SQLite
  MLflow store, with the pipeline's lineage tags on its run;
* a Feast repository (same ``feature_store.yaml`` layout as ``feature_repo/``, objects from
  ``build_definitions`` plus the auxiliary ``atr`` column) with a features Parquet holding:
  ``bitfinex:BTC/USD:30m`` real candles shifted so the last one closed at the latest 30-minute
  boundary (fresh), and ``bitfinex:ETH/USD:30m`` real 2019 candles (stale);
* a ``serving_config.json`` pointing the service at both.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from candlecast.feature_store.definitions import build_definitions
from candlecast.feature_store.store import materialize_all, to_feast_table
from candlecast.features import FeatureConfig, compute_features, feature_names, make_labels
from candlecast.serving.config import ServingConfig, write_serving_config

FRESH = "bitfinex:BTC/USD:30m"
STALE = "bitfinex:ETH/USD:30m"
LINEAGE = {
    "lineage.data_version": "abc123def456",
    "lineage.params_hash": "0123456789ab",
    "lineage.git_commit": "deadbeef",
    "lineage.feature_service": "direction_model_v1",
}
FEATURE_STORE_YAML = """project: candlecast_test
provider: local
registry:
  registry_type: file
  path: ../data/feast/registry.db
  cache_ttl_seconds: 60
online_store:
  type: sqlite
  path: ../data/feast/online_store.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
auth:
  type: no_auth
"""


@dataclass(frozen=True)
class ServingEnv:
    root: Path
    config_path: Path
    model: object  # the fitted LGBMClassifier
    names: list[str]
    fresh_candles: pd.DataFrame  # the shifted BTC candles behind the online row
    fresh_features: pd.DataFrame  # their Feast table: series_id, event_timestamp, features
    run_id: str


def shift_to_now(candles: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Move a 30m series so its last candle closed at the latest 30-minute boundary."""
    step = pd.Timedelta(minutes=30)
    last_close = now.floor("30min")
    out = candles.copy()
    out["timestamp"] = out["timestamp"] + (last_close - step - out["timestamp"].iloc[-1])
    return out.reset_index(drop=True)


def train_model(candles: pd.DataFrame, names: list[str]):  # noqa: ANN201
    from lightgbm import LGBMClassifier

    feats = compute_features(candles, FeatureConfig())
    labels = make_labels(candles)
    keep = labels["label_up_1"].notna().to_numpy()
    X, y = feats.loc[keep, names], labels.loc[keep, "label_up_1"].astype(int)
    model = LGBMClassifier(n_estimators=40, num_leaves=7, min_child_samples=50,
                           learning_rate=0.05, random_state=0, verbose=-1, n_jobs=1)
    return model.fit(X, y), X


def log_model(store: Path, artifacts: Path, model, X: pd.DataFrame) -> str:  # noqa: ANN001
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlruns.db'}")
    exp = mlflow.create_experiment("candlecast", artifact_location=artifacts.as_uri())
    with mlflow.start_run(experiment_id=exp, run_name="lightgbm-test") as run:
        mlflow.set_tags({"model_family": "lightgbm", **LINEAGE})
        example = X.iloc[:5]
        signature = infer_signature(example, model.predict_proba(example)[:, 1])
        # explicit requirements: MLflow's inference imports the model in a subprocess (~30 s)
        mlflow.lightgbm.log_model(model, name="model", signature=signature,
                                  pip_requirements=["lightgbm", "scikit-learn", "pandas"],
                                  registered_model_name="candlecast-lightgbm")
    return run.info.run_id


def build_feature_store(root: Path, repo: Path, tables: list[pd.DataFrame], names: list[str]
                        ) -> None:
    from feast import FeatureStore

    data = root / "data" / "features"
    data.mkdir(parents=True)
    (root / "data" / "feast").mkdir(parents=True)
    features = pd.concat(tables, ignore_index=True)
    features.to_parquet(data / "features.parquet", index=False)
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    objects = build_definitions([*names, "atr"], str(data / "features.parquet"),
                                "direction_model_v1", timedelta(hours=6))
    store = FeatureStore(repo_path=str(repo))
    store.apply(objects.all())
    ts = features["event_timestamp"]
    materialize_all(store, ts.min(), ts.max())


def write_config(root: Path) -> Path:
    """The service's config, pointing at where :func:`build_env` will PUT the stores."""
    config = ServingConfig(
        project_root=str(root),
        tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlruns.db'}",
        feature_repo=str(root / "feature_repo"),
        max_body_bytes=200_000,
        max_candles=1000,
        load_retry_seconds=1.0,
    )
    path = root / "serving_config.json"
    write_serving_config(config, path)
    return path


def build_env(root: Path, btc: pd.DataFrame, eth: pd.DataFrame) -> ServingEnv:
    """Build the stores in staging folders and move them into place when complete, so a
    service started before (it retries loading) never sees a half-written store."""
    config_path = root / "serving_config.json"
    if not config_path.exists():
        write_config(root)
    names = feature_names(FeatureConfig())
    model, X = train_model(btc.iloc[-6000:-1200].reset_index(drop=True), names)
    staging = root / "mlflow_staging"
    staging.mkdir()
    run_id = log_model(staging, root / "mlartifacts", model, X)
    staging.rename(root / "mlflow")
    fresh = shift_to_now(btc.iloc[-1200:].reset_index(drop=True), pd.Timestamp.now(tz="UTC"))
    fresh_feats = to_feast_table(compute_features(fresh, FeatureConfig()))
    tables = [fresh_feats,
              to_feast_table(compute_features(eth.iloc[-1200:].reset_index(drop=True)))]
    build_feature_store(root, root / "feature_repo_staging", tables, names)
    (root / "feature_repo_staging").rename(root / "feature_repo")
    return ServingEnv(root, config_path, model, names, fresh, fresh_feats, run_id)


#: the control token the test service is started with (``POST /reload`` needs it)
CONTROL_TOKEN = "test-control-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningService:
    url: str
    pid: int
    log_path: Path
    process: subprocess.Popen | None = None  # only in the process that started it

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM (BentoML shuts its workers down), SIGKILL if it hangs; waits when it can."""
        if self.process is None:
            if self.alive():
                os.kill(self.pid, signal.SIGTERM)
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_service(bentos_dir: Path, config_path: Path, workdir: Path) -> RunningService:
    """``bentoml serve`` the service on a free port (returns at once). No ``--host``: the
    service's own default (127.0.0.1) is what ``test_the_service_binds_loopback_by_default``
    checks."""
    port = free_port()
    env = {
        **os.environ,
        "CANDLECAST_SERVING_CONFIG": str(config_path),
        "BENTOML_HOME": str(workdir / "bentoml_home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "CANDLECAST_CONTROL_TOKEN": CONTROL_TOKEN,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("BENTOML_HOST", None)
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    log_path = workdir / "bentoml_serve.log"
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [str(bentoml_cli), "serve", "service:SignalService", "--working-dir",
             str(bentos_dir), "--port", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=workdir,
        )
    return RunningService(f"http://127.0.0.1:{port}", process.pid, log_path, process)


def wait_ready(service: RunningService, timeout: float = 180.0) -> RunningService:
    """Poll ``/readyz`` until 200; raise with the server log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"bentoml serve exited:\n{service.log_tail()}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    service.stop()
    raise RuntimeError(f"service not ready after {timeout:.0f}s:\n{service.log_tail()}")


def candles_payload(candles: pd.DataFrame, symbol: str = "BTC/USD") -> dict[str, object]:
    return {
        "exchange": "bitfinex",
        "symbol": symbol,
        "timeframe": "30m",
        "candles": [
            {"timestamp": ts.isoformat().replace("+00:00", "Z"), "open": float(o),
             "high": float(h), "low": float(lo), "close": float(c), "volume": float(v)}
            for ts, o, h, lo, c, v in zip(
                candles["timestamp"], candles["open"], candles["high"], candles["low"],
                candles["close"], candles["volume"], strict=True)
        ],
    }


def batch_prob(env: ServingEnv, candles: pd.DataFrame) -> float:
    """Independent path: batch features of the candles, the raw model on the last row."""
    feats = compute_features(candles.assign(exchange="bitfinex", symbol="BTC/USD",
                                            timeframe="30m"), FeatureConfig())
    return float(np.asarray(env.model.predict_proba(feats[env.names].iloc[[-1]]))[0, 1])


def dump_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload))


def window_ensemble_class():  # noqa: ANN201
    """An ensemble-shaped pyfunc that needs a window (defined lazily: imports mlflow)."""
    import mlflow

    class WindowEnsemble(mlflow.pyfunc.PythonModel):
        """P(up) = sigmoid(100 x mean logret_1 over the window); quantiles of logret_1;
        ``disagreement`` = rows seen, so a test can check the window it was given."""

        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
            return window_outputs(model_input)

    return WindowEnsemble


def window_outputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The window model's answer; like the real ensemble it also forecasts horizon 4:
    ``exp_ret_4`` = 4 x the window's mean return, ``volatility`` = the window's return std."""
    r = frame["logret_1"].astype(float)
    prob = 1.0 / (1.0 + np.exp(-100.0 * float(r.mean())))
    return pd.DataFrame({
        "prob_up": [prob],
        "q0.1": [float(r.quantile(0.1))],
        "q0.5": [float(r.quantile(0.5))],
        "q0.9": [float(r.quantile(0.9))],
        "disagreement": [float(len(frame))],
        "prob_up_4": [prob],
        "exp_ret_4": [4.0 * float(r.mean())],
        "volatility": [float(r.std())],
    })


def register_window_model(env: ServingEnv, name: str, window: int,
                          policy: dict | None = None) -> str:
    """Log the window pyfunc (inputs: series_id, event_timestamp, features), with a bundled
    decision ``policy`` (a PolicyConfig as a dict) if given, and point the alias ``champion``
    of ``name`` at it; returns the version."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(f"sqlite:///{env.root / 'mlflow' / 'mlruns.db'}")
    example = env.fresh_features[["series_id", "event_timestamp", *env.names]].iloc[-window:]
    example = example.reset_index(drop=True)
    signature = infer_signature(example, window_outputs(example))
    with mlflow.start_run(run_name=f"{name}-test"):
        mlflow.set_tags(LINEAGE)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=window_ensemble_class()(), signature=signature,
            metadata={"candlecast": {"window_rows": window, "policy": policy,
                                     "costs": None if policy is None else {}}},
            pip_requirements=["pandas"],
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(name, "champion", version)
    return version


# ------------------------------------------------------------ one stack shared by xdist workers

STATE = "serving_stack.json"


def acquire_stack(base: Path, bentos_dir: Path, btc: pd.DataFrame, eth: pd.DataFrame
                  ) -> tuple[ServingEnv, RunningService]:
    """The serving stack of this test run, built by the first process that asks (under a file
    lock in ``base``, the run's shared temp folder) and reused by the others (xdist workers):
    one service per run whatever the distribution mode. Pair with :func:`release_stack`."""
    from filelock import FileLock

    with FileLock(str(base / "serving_stack.lock")):
        state_path = base / STATE
        if state_path.exists():
            state = json.loads(state_path.read_text())
            state["users"] += 1
            state_path.write_text(json.dumps(state))
            root = Path(state["root"])
            env = pickle.loads((root / "env.pickle").read_bytes())
            running = RunningService(state["url"], state["pid"], Path(state["log"]))
        else:
            # a worker that starts serving tests after another worker released (and stopped)
            # the stack builds a new one in fresh folders
            n = 0
            while (base / f"serving_env{n or ''}").exists():
                n += 1
            root = base / f"serving_env{n or ''}"
            root.mkdir()
            workdir = base / f"bentoml_serve{n or ''}"
            workdir.mkdir()
            running = start_service(bentos_dir, write_config(root), workdir)
            try:
                env = build_env(root, btc, eth)
            except BaseException:
                running.stop()
                raise
            (root / "env.pickle").write_bytes(pickle.dumps(env))
            state_path.write_text(json.dumps({
                "root": str(root), "url": running.url, "pid": running.pid,
                "log": str(running.log_path), "users": 1,
            }))
    return env, wait_ready(running)


def release_stack(base: Path, running: RunningService) -> None:
    """The last user stops the service (the stores stay in the temp folder)."""
    from filelock import FileLock

    with FileLock(str(base / "serving_stack.lock")):
        state_path = base / STATE
        state = json.loads(state_path.read_text())
        state["users"] -= 1
        if state["users"] > 0:
            state_path.write_text(json.dumps(state))
            return
        state_path.unlink()
    running.stop()
