"""Shared fakes and builders for the trader tests (imported, not collected).

* :class:`MemorySink` — an in-memory "online store": the latest feature row per series, with its
  event timestamp (candle close), like Feast's online table.
* :class:`ScriptedSignals` — an in-process signal service. Like the real ``signal`` endpoint it
  reads the latest features the trader wrote to the sink and answers for *that* candle, from a
  precomputed table of actions/probabilities keyed by candle open time (so the backtester can be
  fed the very same numbers). It can be switched off (``down``) for given candles to simulate an
  outage, or answer ``stale``.
"""

from __future__ import annotations

import math
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.backtest import BacktestConfig, CostConfig
from candlecast.data.schema import SeriesId
from candlecast.features import FeatureConfig, compute_features, priming_bars
from candlecast.risk import RiskConfig
from candlecast.trading import (
    PaperBroker,
    ReplayFeed,
    Signal,
    SignalUnavailable,
    StateStore,
    TradeConfig,
    Trader,
)
from candlecast.trading.candles import Bar

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fakes"))  # fake_binance*, for the live tests


class MemorySink:
    def __init__(self) -> None:
        self.latest: dict[str, tuple[pd.Timestamp, dict[str, float]]] = {}
        self.writes = 0

    def write(self, series: SeriesId, bar: Bar, features: Mapping[str, float]) -> None:
        close = pd.Timestamp(bar.ts + int(series.step.value), tz="UTC")
        self.latest[series.key] = (close, dict(features))
        self.writes += 1


class ScriptedSignals:
    """Actions (-1/0/+1) and P(up) per candle OPEN time (ns)."""

    def __init__(self, sink: MemorySink, step_ns: int, actions: Mapping[int, int],
                 prob_up: Mapping[int, float] | None = None) -> None:
        self.sink, self.step_ns = sink, step_ns
        self.actions, self.prob_up = dict(actions), dict(prob_up or {})
        self.down: set[int] = set()  # candle open times for which the service is unreachable
        self.stale: set[int] = set()
        self.calls = 0

    def _answer(self, open_ns: int, close: pd.Timestamp) -> Signal:
        self.calls += 1
        if open_ns in self.down:
            raise SignalUnavailable("connection", "service down (scripted)")
        action = {1: "long", -1: "short", 0: "flat"}[int(self.actions.get(open_ns, 0))]
        status = "stale" if open_ns in self.stale else "ok"
        return Signal(status, action, prob_up=self.prob_up.get(open_ns, math.nan),
                      model_version="scripted-1", feature_timestamp=close)

    def signal(self, series: SeriesId) -> Signal:
        close, _features = self.sink.latest[series.key]
        return self._answer(int(close.value) - self.step_ns, close)

    def predict(self, series: SeriesId, candles: list[Bar]) -> Signal:
        last = pd.Timestamp(candles[-1].ts, tz="UTC")
        return self._answer(int(last.value), last + series.step)

    def ready(self) -> bool:
        return True


def replay_slice(candles: pd.DataFrame, start: int, n: int, features: FeatureConfig
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history incl. priming + replay, the replayed candles, batch features of the replay)."""
    prime = priming_bars(features)
    full = candles.iloc[start - prime:start + n].reset_index(drop=True)
    replay = full.iloc[prime:].reset_index(drop=True)
    feats = compute_features(full, features).iloc[prime:].reset_index(drop=True)
    return full, replay, feats


def sma_actions(candles: pd.DataFrame, start: int, n: int, long_only: bool = False
                ) -> np.ndarray:
    """SMA(10)/SMA(30) crossover over everything up to each candle, for the replayed ones."""
    from candlecast.backtest import sma_crossover_signal

    close = candles["close"].to_numpy()[:start + n]
    return sma_crossover_signal(close, 10, 30, long_only=long_only)[start:start + n]


def build_paper_trader(
    tmp_path: Path,
    full: pd.DataFrame,
    replay: pd.DataFrame,
    actions: np.ndarray,
    *,
    prob_up: np.ndarray | None = None,
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
    ts = pd.DatetimeIndex(replay["timestamp"]).asi8
    if signals is None:
        signals = ScriptedSignals(
            sink, int(cfg.series[0].step.value),
            dict(zip(ts.tolist(), np.asarray(actions).tolist(), strict=True)),
            None if prob_up is None else
            dict(zip(ts.tolist(), np.asarray(prob_up).tolist(), strict=True)))
    feed = ReplayFeed({symbol: full}, timeframe, start=replay["timestamp"].iloc[0], speed=speed)
    store = StateStore(cfg.state_db, synchronous=cfg.state_sync)
    trader = Trader(cfg, broker=PaperBroker(costs), feed=feed, signals=signals, store=store,
                    risk=risk, costs=costs, backtest=backtest, features=features,
                    feature_sink=sink, sleep=sleep or (lambda s: None))  # type: ignore[arg-type]
    return trader, signals, sink, store


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


class FakeSignalService:
    """The signal service's HTTP contract on 127.0.0.1 (a thread), answering from a table of
    actions by candle open time. ``mode``: ``ok`` | ``stale`` | ``error500`` | ``error400`` |
    ``slow`` (sleeps ``delay_s``) | ``garbage`` (200 with a non-JSON body). ``requests`` logs
    (path, JSON body)."""

    def __init__(self, actions: Mapping[int, int], step_ns: int, sink: MemorySink | None = None,
                 delay_s: float = 1.0) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.actions, self.step_ns, self.sink = dict(actions), step_ns, sink
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
                if self.path == "/predict":
                    last = pd.Timestamp(body["candles"][-1]["timestamp"])
                    open_ns = int(last.value)
                else:
                    key = f"{body['exchange']}:{body['symbol']}:{body['timeframe']}"
                    close = service.sink.latest[key][0] if service.sink else None
                    open_ns = int(close.value) - service.step_ns if close is not None else 0
                action = {1: "long", -1: "short", 0: "flat"}[service.actions.get(open_ns, 0)]
                feature_ts = pd.Timestamp(open_ns + service.step_ns, tz="UTC").isoformat()
                answer = {"status": "stale" if mode == "stale" else "ok", "prob_up": 0.6,
                          "quantiles": {"q0.5": 0.001}, "confidence": 0.2, "disagreement": 0.1,
                          "action": action, "size_fraction": 1.0, "stop_price": None,
                          "take_profit": None, "model_version": "fake-1",
                          "feature_timestamp": feature_ts}
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
