"""Shared fakes and builders for the trader tests (imported, not collected).

* :class:`MemorySink` — an in-memory "online store": the latest feature row per series, with its
  event timestamp (candle close), like Feast's online table.
* :class:`PolicyScript` — what the scripted signal services answer: the SAME
  :class:`~candlecast.policy.Policy` the backtester's :class:`~candlecast.policy.PolicyDecider`
  runs, on precomputed per-candle forecast arrays (keyed by candle open time), given the
  position and bars held the TRADER reports. The backtester gets ``script.decider()`` over the
  very same arrays, so a difference in what the trader reports shows up as different trades.
* :class:`ScriptedSignals` — an in-process signal service answering the policy's target in the
  full JSON contract (parsed by the client's own ``parse_signal``). Like the real ``signal``
  endpoint it reads the latest features the trader wrote to the sink and answers for *that*
  candle. It can be switched off (``down``) for given candles to simulate an outage, or answer
  ``stale``.
* :class:`HeldDecider` — the backtester's decider while the trader has no fresh signal (outage,
  pause): it keeps what is held.
"""

from __future__ import annotations

import math
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest import BacktestConfig, CostConfig
from candlecast.backtest.config import ExecutionConfig
from candlecast.backtest.result import BacktestResult
from candlecast.backtest.targets import run_targets
from candlecast.data.schema import SeriesId
from candlecast.features import FeatureConfig, compute_features, priming_bars
from candlecast.policy import Forecast, Policy, PolicyConfig, PolicyDecider
from candlecast.risk import RiskConfig
from candlecast.trading import (
    PaperBroker,
    ReplayFeed,
    Signal,
    SignalUnavailable,
    StateStore,
    TradeConfig,
    Trader,
    parse_signal,
)
from candlecast.trading.candles import Bar

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fakes"))  # fake_binance*, for the live tests
BARS_PER_YEAR_30M = 17_520.0
NAN = math.nan


class MemorySink:
    def __init__(self) -> None:
        self.latest: dict[str, tuple[pd.Timestamp, dict[str, float]]] = {}
        self.writes = 0

    def write(self, series: SeriesId, bar: Bar, features: Mapping[str, float]) -> None:
        close = pd.Timestamp(bar.ts + int(series.step.value), tz="UTC")
        self.latest[series.key] = (close, dict(features))
        self.writes += 1


class PolicyScript:
    """A policy over per-candle forecasts keyed by candle open time (ns)."""

    def __init__(self, policy: Policy, open_ns: Iterable[int], expected_return: object,
                 volatility: object, prob_up: object | None = None,
                 model_version: str = "scripted-1") -> None:
        self.policy, self.model_version = policy, model_version
        self.er = np.asarray(expected_return, dtype=float)
        self.vol = np.asarray(volatility, dtype=float)
        self.pu = (np.full(len(self.er), NAN) if prob_up is None
                   else np.asarray(prob_up, dtype=float))
        self.index = {int(t): i for i, t in enumerate(open_ns)}
        if len(self.index) != len(self.er):
            raise ValueError("one forecast per candle open time")

    @property
    def execution(self) -> ExecutionConfig:
        return self.policy.config.execution

    def decider(self) -> PolicyDecider:
        return PolicyDecider(self.policy, self.er, self.vol, self.pu)

    def answer(self, open_ns: int, step_ns: int, position: float, bars_held: int,
               status: str = "ok") -> dict[str, Any]:
        """The service's JSON answer for the candle opening at ``open_ns``."""
        i = self.index.get(open_ns)
        er, vol, pu = (NAN, NAN, NAN) if i is None else (self.er[i], self.vol[i], self.pu[i])
        cfg = self.policy.config
        close = pd.Timestamp(open_ns + step_ns, tz="UTC").isoformat()
        if status != "ok":
            return {"status": status, "prob_up": None, "quantiles": None, "confidence": None,
                    "disagreement": None, "action": "flat", "size_fraction": 0.0,
                    "stop_price": None, "take_profit": None,
                    "model_version": self.model_version, "feature_timestamp": close,
                    "target_position": None, "policy": None,
                    "execution": cfg.execution.model_dump(mode="json"), "forecasts": {},
                    "volatility": None}
        d = self.policy.decide(Forecast(er, vol, pu), position, bars_held)
        num = (lambda x: None if math.isnan(x) else float(x))  # noqa: E731
        return {
            "status": "ok", "prob_up": num(pu), "quantiles": {}, "confidence": None,
            "disagreement": None,
            "action": "long" if d.target > 0 else "short" if d.target < 0 else "flat",
            "size_fraction": abs(d.target), "stop_price": None, "take_profit": None,
            "model_version": self.model_version, "feature_timestamp": close,
            "target_position": d.target,
            "policy": {"reason": str(d.reason), "edge": num(d.edge),
                       "entry_threshold": d.entry_threshold, "exit_threshold": d.exit_threshold,
                       "size": num(d.size), "horizon": cfg.horizon, "label": cfg.label()},
            "execution": cfg.execution.model_dump(mode="json"),
            "forecasts": {str(cfg.horizon): {"prob_up": num(pu), "expected_return": num(er)}},
            "volatility": num(vol),
        }


class ScriptedSignals:
    """The in-process signal service: the script's answer for the candle whose features were
    written last (``signal``) or the last candle sent (``predict``)."""

    def __init__(self, sink: MemorySink, step_ns: int, script: PolicyScript) -> None:
        self.sink, self.step_ns, self.script = sink, step_ns, script
        self.down: set[int] = set()  # candle open times for which the service is unreachable
        self.stale: set[int] = set()
        self.calls = 0
        self.requests: list[tuple[int, float, int]] = []  # (open ns, position, bars held)

    def _answer(self, open_ns: int, position: float, bars_held: int) -> Signal:
        self.calls += 1
        self.requests.append((open_ns, position, bars_held))
        if open_ns in self.down:
            raise SignalUnavailable("connection", "service down (scripted)")
        status = "stale" if open_ns in self.stale else "ok"
        return parse_signal(self.script.answer(open_ns, self.step_ns, position, bars_held,
                                               status))

    def signal(self, series: SeriesId, position: float = 0.0, bars_held: int = 0) -> Signal:
        close, _features = self.sink.latest[series.key]
        return self._answer(int(close.value) - self.step_ns, position, bars_held)

    def predict(self, series: SeriesId, candles: list[Bar], position: float = 0.0,
                bars_held: int = 0) -> Signal:
        return self._answer(int(candles[-1].ts), position, bars_held)

    def ready(self) -> bool:
        return True


class HeldDecider:
    """``inner`` except on ``held`` bars, where it keeps what is held (no order): the
    backtest of a trader without a fresh signal there."""

    def __init__(self, inner: Any, held: Iterable[int]) -> None:
        self.inner, self.held = inner, set(held)

    def __len__(self) -> int:
        return len(self.inner)

    def decide(self, bar: int, position: float, bars_held: int) -> tuple[float, str, float]:
        if bar in self.held:
            return position, "held", NAN
        return self.inner.decide(bar, position, bars_held)


class RecordingDecider:
    """``inner``, recording what it was asked: (bar, position, bars held)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[int, float, int]] = []

    def __len__(self) -> int:
        return len(self.inner)

    def decide(self, bar: int, position: float, bars_held: int) -> tuple[float, str, float]:
        self.calls.append((bar, position, bars_held))
        return self.inner.decide(bar, position, bars_held)


def replay_slice(candles: pd.DataFrame, start: int, n: int, features: FeatureConfig
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history incl. priming + replay, the replayed candles, batch features of the replay)."""
    prime = priming_bars(features)
    full = candles.iloc[start - prime:start + n].reset_index(drop=True)
    replay = full.iloc[prime:].reset_index(drop=True)
    feats = compute_features(full, features).iloc[prime:].reset_index(drop=True)
    return full, replay, feats


def noisy_forecast(candles: pd.DataFrame, start: int, n: int, horizon: int, noise: float,
                   seed: int) -> np.ndarray:
    """A forecast of the next ``horizon`` bars' log return for the replayed candles: the true
    move plus ``noise`` times its spread of Gaussian noise, shrunk (an IC well below 1)."""
    close = candles["close"].to_numpy()[start:start + n + horizon]
    fwd = np.full(n, 0.0)
    m = min(n, len(close) - horizon)
    fwd[:m] = np.log(close[horizon:horizon + m] / close[:m])
    rng = np.random.default_rng(seed)
    return (fwd + rng.normal(0.0, noise * fwd.std(), n)) / (1.0 + noise ** 2)


def make_script(replay: pd.DataFrame, feats: pd.DataFrame, candles: pd.DataFrame, start: int,
                *, costs: CostConfig | None = None, noise: float = 1.5, seed: int = 0,
                **policy: Any) -> PolicyScript:
    """The policy (``PolicyConfig(**policy)``, the costs' round trip) on a noisy forecast of
    the replayed candles, with ``rv_48`` as the one-bar volatility forecast."""
    cfg = PolicyConfig(**policy)
    n = len(replay)
    er = noisy_forecast(candles, start, n, cfg.horizon, noise, seed)
    prob = 1.0 / (1.0 + np.exp(-er / max(1e-12, float(np.std(er)))))
    return PolicyScript(Policy(cfg, costs or CostConfig(), BARS_PER_YEAR_30M),
                        pd.DatetimeIndex(replay["timestamp"]).asi8.tolist(), er,
                        feats["rv_48"].to_numpy(), prob)


def backtest_script(replay: pd.DataFrame, feats: pd.DataFrame, script: PolicyScript, *,
                    risk: RiskConfig | None = None, costs: CostConfig | None = None,
                    backtest: BacktestConfig | None = None, held: Iterable[int] = (),
                    kill_at: pd.Timestamp | None = None, decider: Any = None
                    ) -> BacktestResult:
    """``run_targets`` on the script's forecasts (kept where the trader had no signal)."""
    inner = decider if decider is not None else script.decider()
    return run_targets(replay, HeldDecider(inner, held), risk or RiskConfig(), costs,
                       backtest, script.execution, atr=feats["atr"].to_numpy(),
                       kill_at=kill_at)


def build_paper_trader(
    tmp_path: Path,
    full: pd.DataFrame,
    replay: pd.DataFrame,
    script: PolicyScript,
    *,
    risk: RiskConfig | None = None,
    costs: CostConfig | None = None,
    backtest: BacktestConfig | None = None,
    features: FeatureConfig | None = None,
    config: Mapping[str, object] | None = None,
    speed: float = 0.0,
    sleep: object = None,
    signals: object = None,
) -> tuple[Trader, ScriptedSignals, MemorySink, StateStore]:
    symbol = str(full["symbol"].iloc[0])
    exchange, timeframe = str(full["exchange"].iloc[0]), str(full["timeframe"].iloc[0])
    fields: dict[str, object] = {
        "exchange": exchange, "symbols": (symbol,), "timeframe": timeframe,
        "state_db": str(tmp_path / "state.db"), "kill_switch_file": str(tmp_path / "KILL"),
        "pause_file": str(tmp_path / "PAUSE"), "signal_retries": 0, "poll_interval_s": 0.01,
        "state_sync": "NORMAL",
    }
    fields.update(config or {})
    cfg = TradeConfig(**fields)
    sink = MemorySink()
    if signals is None:
        signals = ScriptedSignals(sink, int(cfg.series[0].step.value), script)
    feed = ReplayFeed({symbol: full}, timeframe, start=replay["timestamp"].iloc[0], speed=speed)
    store = StateStore(cfg.state_db, synchronous=cfg.state_sync)
    try:
        trader = Trader(cfg, broker=PaperBroker(costs), feed=feed, signals=signals, store=store,
                        risk=risk, costs=costs, backtest=backtest, features=features,
                        feature_sink=sink, sleep=sleep or (lambda s: None))  # type: ignore[arg-type]
    except BaseException:
        store.close()  # a refused state must not stay locked
        raise
    return trader, signals, sink, store  # type: ignore[return-value]


def trader_fills(store: StateStore) -> pd.DataFrame:
    fills = store.frame("fills")
    fills["timestamp"] = pd.to_datetime(fills["ts"], unit="ns", utc=True)
    return fills


def assert_same_fills(trader_f: pd.DataFrame, backtest_f: pd.DataFrame) -> None:
    """Same fills, in order: time, side, qty, price, fee, reason (to float rounding)."""
    assert len(trader_f) == len(backtest_f), (len(trader_f), len(backtest_f))
    assert (trader_f["timestamp"].to_numpy() == backtest_f["timestamp"].to_numpy()).all()
    assert (trader_f["side"].to_numpy() == backtest_f["side"].to_numpy()).all()
    assert list(trader_f["reason"]) == list(backtest_f["reason"])
    for col in ("qty", "price", "fee"):
        np.testing.assert_allclose(trader_f[col].to_numpy(), backtest_f[col].to_numpy(),
                                   rtol=1e-9, atol=0, err_msg=col)


def assert_same_decisions(store: StateStore, result: BacktestResult) -> pd.DataFrame:
    """The trader's decisions journal = the backtester's (action, reason, side, qty), except
    the trader's decision at the last candle (the backtester never decides there)."""
    last = int(pd.DatetimeIndex(result.timestamps).asi8[-1])
    mine = store.frame("decisions")
    mine = mine[~((mine["ts"] == last) & mine["action"].isin(["target", "enter", "reject"]))]
    theirs = result.decisions
    assert list(mine["action"]) == list(theirs["action"])
    assert list(mine["reason"]) == list(theirs["reason"])
    assert list(mine["side"].astype(int)) == list(theirs["side"].astype(int))
    np.testing.assert_allclose(mine["qty"].to_numpy(float), theirs["qty"].to_numpy(float),
                               rtol=1e-9, atol=1e-12)
    return mine


class FakeSignalService:
    """The signal service's HTTP contract on 127.0.0.1 (a thread), answering the script's
    policy for the position and bars held in each request. ``mode``: ``ok`` | ``stale`` |
    ``error500`` | ``error400`` | ``slow`` (sleeps ``delay_s``) | ``garbage`` (200 with a
    non-JSON body) | ``no_target`` (an answer of a service older than the target contract).
    A request without a finite ``position`` or an integer ``bars_held`` gets a 422 like the
    real service's. ``requests`` logs (path, JSON body)."""

    def __init__(self, script: PolicyScript, step_ns: int, sink: MemorySink | None = None,
                 delay_s: float = 1.0) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script, self.step_ns, self.sink = script, step_ns, sink
        self.mode, self.delay_s = "ok", delay_s
        self.requests: list[tuple[str, object]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # no Nagle: else ~40 ms per keep-alive answer (delayed ACK)
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200 if self.path == "/readyz" else 404, b"{}")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                service.requests.append((self.path, body))
                mode = service.mode
                if mode == "slow":
                    time.sleep(service.delay_s)
                if mode == "error500":
                    self._send(500, b"<html>boom</html>", "text/html")
                    return
                if mode == "error400":
                    self._send(422, json.dumps({"error": "bad", "field": "symbol"}).encode())
                    return
                if mode == "garbage":
                    self._send(200, b"{not json")
                    return
                position, held = body.get("position", 0.0), body.get("bars_held", 0)
                if (isinstance(position, bool) or not isinstance(position, int | float)
                        or not math.isfinite(position) or isinstance(held, bool)
                        or not isinstance(held, int) or held < 0):
                    self._send(422, json.dumps({"error": "bad position/bars_held",
                                                "field": "position"}).encode())
                    return
                if self.path == "/predict":
                    last = pd.Timestamp(body["candles"][-1]["timestamp"])
                    open_ns = int(last.value)
                else:
                    key = f"{body['exchange']}:{body['symbol']}:{body['timeframe']}"
                    close = service.sink.latest[key][0] if service.sink else None
                    open_ns = int(close.value) - service.step_ns if close is not None else 0
                answer = service.script.answer(open_ns, service.step_ns, float(position), held,
                                               "stale" if mode == "stale" else "ok")
                if mode == "no_target":
                    for name in ("target_position", "policy", "execution", "forecasts",
                                 "volatility"):
                        answer.pop(name)
                self._send(200, json.dumps(answer).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeSignalService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
