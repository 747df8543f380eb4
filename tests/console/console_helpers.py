"""A small real project for the console tests (imported, not collected).

* :func:`replay_project` -- a project folder with real Bitfinex BTC/USD 30m candles in a
  ``CandleStore``, a ``params.yaml`` whose ``trade:`` section points the trader at it, and a
  paper trader built by the CLI's own ``build_trader`` replaying the last candles against the
  signal service's HTTP contract (``FakeSignalService`` on 127.0.0.1, ``/predict``): the service
  answers the target position of a real :class:`~candlecast.policy.Policy` (long/short,
  vol-targeted) on a noisy forecast of the replayed candles, for the position and bars held the
  trader reports (:func:`console_script`);
* :func:`write_registry` -- a real MLflow SQLite registry with ``candlecast-ensemble``
  versions, the champion moved by ``tracking.aliases.move_champion`` (history) and a
  challenger, plus a retrain ops run;
* :func:`write_ops_outputs` -- drift verdict files as the drift check writes them;
* :func:`write_backtest_curve` -- the backtest stage's ``equity.csv`` for the same period, from
  the target backtester (``run_targets``) on the same candles, with a ``PolicyDecider`` running
  the same policy on the same forecasts (as the trader parity tests do).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.features import FeatureConfig

TESTS = Path(__file__).resolve().parents[1]
for _folder in ("trading", "fakes"):  # trading_helpers (FakeSignalService), fake_telegram
    if str(TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(TESTS / _folder))

TOKEN = "console-test-token-0123456789"  # noqa: S105 - a test value
SERIES = SeriesId("bitfinex", "BTC/USD", "30m")
START, N = 6000, 240
STEP_NS = 30 * 60 * 10**9
#: the policy the scripted service runs: a 4-bar horizon, long/short, trades every few candles
POLICY = {"horizon": 4, "entry_margin": 1.0, "exit_margin": 0.0, "min_hold_bars": 2,
          "vol_target": 0.5, "allow_short": True}


@dataclass
class Project:
    root: Path
    params_path: Path
    candles: pd.DataFrame  # priming history + replayed candles
    replay: pd.DataFrame  # the replayed candles
    features: pd.DataFrame  # batch features of the replayed candles (ATR for the backtest)
    service: Any  # FakeSignalService (running), answering ``service.script``'s policy

    def params(self) -> Any:
        from candlecast.config import load_params

        return load_params(self.params_path)

    def trader(self) -> Any:
        """A paper trader over the project (resumes the stored state if there is one)."""
        from candlecast.trading.session import ReplaySpec, build_trader

        params = self.params()
        return build_trader(params.trade, root=self.root, risk=params.risk, costs=params.costs,
                            backtest=params.backtest.run, features=params.features,
                            replay=ReplaySpec(last=len(self.replay)), feature_sink=False)


def _slices(btc_30m: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from trading_helpers import replay_slice

    return replay_slice(btc_30m, START, N, FeatureConfig())


def console_script(btc_30m: pd.DataFrame) -> Any:
    """The :class:`PolicyScript` the project's signal service answers with (the SAME policy
    and forecasts the backtest comparison's ``PolicyDecider`` gets)."""
    from trading_helpers import make_script

    _full, replay, feats = _slices(btc_30m)
    return make_script(replay, feats, btc_30m, START, **POLICY)


def replay_project(tmp_path: Path, btc_30m: pd.DataFrame, service: Any) -> Project:
    """The project folder; ``service`` must be a started ``FakeSignalService`` over
    :func:`console_script` (several projects may share it: it keeps no per-trader state)."""
    candles, replay, feats = _slices(btc_30m)
    if set(service.script.index) != set(pd.DatetimeIndex(replay["timestamp"]).asi8.tolist()):
        raise ValueError("the service does not answer for the replayed candles")
    root = tmp_path / "project"
    CandleStore(root / "data" / "validated").upsert(SERIES, candles)
    params = {
        "models": {"run": ["baselines", "lightgbm"]},
        "trade": {"exchange": "bitfinex", "symbols": ["BTC/USD"], "timeframe": "30m",
                  "service_url": service.url, "signal_endpoint": "predict",
                  "signal_retries": 0, "write_features": False, "state_sync": "NORMAL",
                  "poll_interval_s": 0.01},
        "console": {"refresh_s": 0.5, "registry_cache_s": 0.0},
    }
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    return Project(root, params_path, candles, replay, feats, service)


def write_registry(root: Path) -> dict[str, str]:
    """Three registered versions of candlecast-ensemble: v1 champion by the ensemble stage,
    v2 promoted by a retrain (history: v1 -> v2), v3 a rejected challenger."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from candlecast.tracking.aliases import mark_challenger, move_champion

    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("candlecast",
                                          artifact_location=(root / "mlartifacts").as_uri())
    name = "candlecast-ensemble"
    client.create_registered_model(name)
    for _ in range(3):
        run = client.create_run(experiment)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    move_champion(client, name, "1", "first ensemble", actor="ensemble stage",
                  when="2019-09-01T00:00:00+00:00")
    move_champion(client, name, "2", "paired bootstrap p=0.03 < 0.1", actor="ops retrain",
                  when="2019-09-08T00:00:00+00:00")
    mark_challenger(client, name, "3")
    client.set_model_version_tag(name, "3", "ops.decision", "rejected")
    client.set_model_version_tag(name, "3", "ops.reason", "p=0.41 >= alpha 0.1")
    retrain = client.create_run(experiment)
    for key, value in {"kind": "ops.retrain", "ops.decision": "rejected",
                       "ops.challenger_version": "3", "ops.champion_version": "2",
                       "ops.reason": "p=0.41 >= alpha 0.1",
                       "ops.decided_at": "2019-09-15T00:00:00+00:00"}.items():
        client.set_tag(retrain.info.run_id, key, value)
    client.log_metric(retrain.info.run_id, "p_value", 0.41)
    client.set_terminated(retrain.info.run_id)
    del mlflow
    return {"uri": uri, "name": name}


def write_ops_outputs(root: Path) -> None:
    drift = root / "reports" / "drift"
    drift.mkdir(parents=True)
    for stamp, drifted, share in (("20190901T000000Z", False, 0.1),
                                  ("20190908T000000Z", True, 0.61)):
        (drift / f"drift_{stamp}.json").write_text(json.dumps({
            "drifted": drifted, "drift_share": share, "prediction_score": 0.2,
            "drifted_features": ["rv_48"] if drifted else [],
            "reasons": ["61% of the features drifted"] if drifted else [],
            "recent_rows": 1000, "lineage": {"champion_version": "2"},
            "report": f"drift_{stamp}.html"}))


def write_backtest_curve(project: Project) -> pd.DataFrame:
    """reports/backtest/<series>/equity.csv as the backtest stage writes it (the primary
    strategy ``policy`` first), from ``run_targets`` on the replayed candles with the service's
    policy, under the project's own risk, cost and backtest settings (the trader's)."""
    from trading_helpers import backtest_script

    params = project.params()
    result = backtest_script(project.replay, project.features, project.service.script,
                             risk=params.risk, costs=params.costs, backtest=params.backtest.run)
    assert len(result.fills) > 4  # a comparison of a curve that moves
    close = project.replay["close"].to_numpy(dtype=float)
    table = pd.DataFrame({"step": np.arange(len(result.equity)),
                          "timestamp": result.timestamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "policy": result.equity,
                          "buy_and_hold": result.equity[0] * close / close[0]})
    folder = project.root / "reports" / "backtest" / "bitfinex_BTC-USD_30m"
    folder.mkdir(parents=True)
    table.to_csv(folder / "equity.csv", index=False)
    return table


class ServerThread:
    """An ASGI app under uvicorn in a thread on a free 127.0.0.1 port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))  # held from here on: no race for the port
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()
