"""What the serving benchmark measures, in order, against services it starts:

1. the paper trader replays real candles (shifted to end now) against ``/signal`` (every tick a
   new candle: the whole ensemble runs), timed by its own per-tick timer, the signal call and
   the Feast write timed separately;
2. a fresh online row (the next candle's real features, written as the trader writes them):
   ``/signal`` and ``/predict`` must answer ``ok`` from the champion before anything is timed;
3. load rounds, trivial and ours interleaved so spikes of the shared machine hit both:
   ``/signal`` at concurrency 1 and 8, ``/predict`` at 1 (and the ``--baseline-src`` service);
4. memory of each service's process tree.

:func:`measure` returns the raw measurements; ``report`` turns them into the result.
"""

from __future__ import annotations

import gc
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving_bench import MINI, REPO, SERIES
from serving_bench.load import (
    RawHttp,
    handler_mean_ms,
    handler_seconds,
    load,
    merge,
    signal_check,
    summarize,
    trivial_check,
)
from serving_bench.services import TRIVIAL_SOURCE, Service, memory, start_service, wait_ready


@dataclass(frozen=True)
class Budget:
    """How much is measured: load rounds, trader ticks, (max requests, max seconds) per load."""

    rounds: int
    ticks: int
    c1: tuple[int, float]
    c8: tuple[int, float]
    predict: tuple[int, float]
    #: candles per /predict request (None: trade.predict_candles)
    predict_candles: int | None = None

    @classmethod
    def of(cls, quick: bool, rounds: int | None = None, ticks: int | None = None,
           predict_candles: int | None = None) -> Budget:
        return cls(rounds or (1 if quick else 2), ticks or (150 if quick else 300),
                   (300, 4.0) if quick else (1500, 12.0), (600, 4.0) if quick else (3000, 12.0),
                   (60, 4.0) if quick else (300, 12.0), predict_candles)


def shifted_candles(frame: Any, last_close: Any) -> Any:
    """The candles moved in time (whole bars) so the last one closes at ``last_close``."""
    import pandas as pd

    step = pd.Timedelta(minutes=30)
    out = frame.copy()
    out["timestamp"] = out["timestamp"] + (last_close - step - out["timestamp"].iloc[-1])
    return out.reset_index(drop=True)


class TimedSignals:
    """The trader's HTTP signal client, timed per call; keeps what it answered."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds: list[float] = []
        self.answers: list[Any] = []

    def signal(self, series: Any, position: float = 0.0, bars_held: int = 0) -> Any:
        t0 = time.perf_counter()
        try:
            sig = self.inner.signal(series, position, bars_held)
        finally:
            self.seconds.append(time.perf_counter() - t0)
        self.answers.append(sig)
        return sig

    def predict(self, series: Any, candles: Any, position: float = 0.0,
                bars_held: int = 0) -> Any:
        t0 = time.perf_counter()
        try:
            sig = self.inner.predict(series, candles, position, bars_held)
        finally:
            self.seconds.append(time.perf_counter() - t0)
        self.answers.append(sig)
        return sig

    def ready(self) -> bool:
        return bool(self.inner.ready())


class TimedSink:
    """The trader's Feast online sink, timed per write."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds: list[float] = []

    def write(self, series: Any, bar: Any, features: Any) -> None:
        t0 = time.perf_counter()
        try:
            self.inner.write(series, bar, features)
        finally:
            self.seconds.append(time.perf_counter() - t0)


def legacy_body_client(base_url: str, timeout: float) -> Any:
    """The trader's HTTP client, but ``/signal`` bodies without ``position``/``bars_held``
    (a service older than the target contract refuses unknown fields)."""
    from candlecast.trading.signals import HttpSignalClient

    class LegacyBodyClient(HttpSignalClient):
        def signal(self, series: Any, position: float = 0.0, bars_held: int = 0) -> Any:
            return self._post("/signal", {"exchange": series.exchange, "symbol": series.symbol,
                                          "timeframe": series.timeframe})

    return LegacyBodyClient(base_url, timeout)


def run_trader(params: Any, candles: Any, service_url: str, ticks: int, workdir: Path,
               model_version: str, name: str = "trader", direct_sink: bool = True,
               legacy_body: bool = False) -> dict[str, Any]:
    """Replay the ``ticks`` candles before the last one through the paper trader against the
    service (``/signal``); the trader's own per-tick timer is the end-to-end latency.
    ``legacy_body``: send only the series (no ``position``/``bars_held``), for a baseline
    service older than the target contract (it refuses unknown fields; it answers no target,
    so that trader decides nothing, but the path is timed the same)."""
    import pandas as pd

    from candlecast.feature_store.definitions import view_columns
    from candlecast.features import feature_names
    from candlecast.trading import TradeConfig
    from candlecast.trading.feast_sink import FeastOnlineSink
    from candlecast.trading.feeds import ReplayFeed
    from candlecast.trading.session import build_trader
    from candlecast.trading.signals import HttpSignalClient

    state = workdir / name
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    config = TradeConfig.model_validate({
        **params.trade.model_dump(), "mode": "paper", "service_url": service_url,
        "signal_endpoint": "signal", "state_db": str(state / "state.db"),
        "kill_switch_file": str(state / "KILL"), "pause_file": str(state / "PAUSE"),
    })
    symbol = SERIES[1]
    start = candles["timestamp"].iloc[-1 - ticks]
    end = candles["timestamp"].iloc[-1]  # the last candle is kept for the fresh /signal row
    feed = ReplayFeed({symbol: candles}, SERIES[2], start=start, end=end, speed=0.0)
    client = (legacy_body_client if legacy_body else HttpSignalClient)(
        config.service_url, config.service_timeout_s)
    signals = TimedSignals(client)
    sink = TimedSink(FeastOnlineSink(MINI / config.feast_repo,
                                     view_columns(feature_names(params.features)),
                                     direct=direct_sink))
    t0 = time.perf_counter()
    # params.backtest is the stage's section; the trader takes its run settings (``run``)
    trader = build_trader(config, root=MINI, risk=params.risk, costs=params.costs,
                          backtest=params.backtest.run, features=params.features, feed=feed,
                          signals=signals, feature_sink=sink)
    build_s = time.perf_counter() - t0
    try:
        gc.collect()
        gc.freeze()  # as `candlecast trade run` does before its session
        t0 = time.perf_counter()
        summary = trader.run()
        run_s = time.perf_counter() - t0
        gc.unfreeze()
        bars = trader.store.frame("bars")
        fills = trader.store.frame("fills")
        events = trader.store.frame("events")
        latencies = list(trader.latencies_s)
        failures = trader.account.signal_failures
    finally:
        trader.store.close()
        signals.inner.close()
    fresh = [s for s in signals.answers if s.status == "ok"]
    versions = sorted({s.model_version for s in signals.answers})
    other = [lat - sig - feast for lat, sig, feast in
             zip(latencies, signals.seconds, sink.seconds, strict=False)]
    problems = []
    if summary.ticks != ticks or len(latencies) != ticks:
        problems.append(f"{summary.ticks} ticks, {len(latencies)} timed; expected {ticks}")
    if len(signals.seconds) != ticks or len(fresh) != ticks or failures:
        problems.append(f"{len(fresh)} fresh signals of {len(signals.seconds)} calls for "
                        f"{ticks} ticks ({failures} failures in a row at the end)")
    if versions != [model_version]:
        problems.append(f"signals from {versions}, expected {model_version}")
    if any(not 0 < s.prob_up < 1 for s in fresh):
        problems.append("a prob_up outside (0, 1)")
    status_counts = bars["signal_status"].value_counts().to_dict() if "signal_status" in \
        bars.columns else {}
    return {
        "ticks": summary.ticks, "status": summary.status, "fills": len(fills),
        "events": events["kind"].value_counts().to_dict() if len(events) else {},
        "bar_signal_status": {str(k): int(v) for k, v in status_counts.items()},
        "first_candle": str(pd.Timestamp(start)), "end_exclusive": str(pd.Timestamp(end)),
        "actions": {a: sum(s.action == a for s in fresh) for a in ("long", "short", "flat")},
        "prob_up_range": [min(s.prob_up for s in fresh), max(s.prob_up for s in fresh)]
        if fresh else None,
        "model_versions": versions, "build_trader_s": build_s, "run_s": run_s,
        "state_sync": config.state_sync,
        "latency": summarize(latencies), "first_tick_ms": latencies[0] * 1e3 if latencies
        else None, "latency_after_first": summarize(latencies[1:]),
        "signal_call": summarize(signals.seconds), "feast_write": summarize(sink.seconds),
        # ticks whose end-to-end time was over twice the median: where the tail comes from
        "slow_ticks": [
            {"tick": i, "total_ms": round(lat * 1e3, 1), "signal_ms": round(sig * 1e3, 1),
             "feast_ms": round(feast * 1e3, 1)}
            for i, (lat, sig, feast) in enumerate(zip(latencies, signals.seconds, sink.seconds,
                                                      strict=False))
            if lat > 2 * float(np.median(latencies))],
        "rest_features_risk_commit": summarize(other), "problems": problems,
    }


def write_fresh_row(params: Any, candles: Any) -> str:
    """The last candle's real features (the trader's incremental engine over the candles before
    it) written to the online store as the trader writes them; returns its close time (ISO)."""
    import pandas as pd

    from candlecast.data.schema import SeriesId
    from candlecast.feature_store.definitions import view_columns
    from candlecast.features import IncrementalFeatureEngine, feature_names
    from candlecast.trading.candles import bars_from_frame
    from candlecast.trading.feast_sink import FeastOnlineSink

    series = SeriesId(*SERIES)
    engine = IncrementalFeatureEngine(params.features, timeframe=SERIES[2])
    bars = bars_from_frame(candles.iloc[-1000:])
    for bar in bars[:-1]:
        engine.update_values(*bar)
    row = engine.update_values(*bars[-1])
    sink = FeastOnlineSink(MINI / params.trade.feast_repo,
                           view_columns(feature_names(params.features)))
    sink.write(series, bars[-1], row)
    close = pd.Timestamp(bars[-1].ts + int(series.step.value), tz="UTC")
    return close.strftime("%Y-%m-%dT%H:%M:%S")


def measure(budget: Budget, model_version: str, baseline_src: Path | None = None
            ) -> dict[str, Any]:
    """Start the services on the cached miniature project, run the scenarios above, stop the
    services; the raw measurements (service logs kept on failure)."""
    import pandas as pd

    from candlecast.config import load_params
    from candlecast.data.schema import SeriesId
    from candlecast.data.store import CandleStore
    from candlecast.pipeline.package_stage import serving_config
    from candlecast.pipeline.paths import Paths
    from candlecast.serving.config import write_serving_config
    from candlecast.trading.signals import candles_payload

    c1_n, c1_s = budget.c1
    c8_n, c8_s = budget.c8
    pr_n, pr_s = budget.predict
    paths = Paths(MINI)
    params = load_params(paths.params)
    raw = CandleStore(paths.validated).read(SeriesId(*SERIES))
    last_close = pd.Timestamp.now(tz="UTC").floor("30min")
    candles = shifted_candles(raw, last_close)
    span_bars = len(candles) + 10
    config = serving_config(params, paths).model_copy(
        update={"max_feature_age_bars": float(span_bars), "load_retry_seconds": 2.0})
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    config_path = work / "serving_config.json"
    write_serving_config(config, config_path)
    trivial_dir = work / "trivial"
    trivial_dir.mkdir()
    (trivial_dir / "service.py").write_text(TRIVIAL_SOURCE)

    services: list[Service] = []
    try:
        ours = start_service("signal", "service:SignalService", REPO / "bentos",
                             {"CANDLECAST_SERVING_CONFIG": str(config_path)}, work)
        services.append(ours)
        trivial = start_service("trivial", "service:Trivial", trivial_dir, {}, work)
        services.append(trivial)
        base = None
        if baseline_src is not None:
            base = start_service("signal_baseline", "service:SignalService", REPO / "bentos",
                                 {"CANDLECAST_SERVING_CONFIG": str(config_path),
                                  "PYTHONPATH": str(baseline_src.resolve())}, work)
            services.append(base)
        wait_ready(trivial, 120)
        wait_ready(ours, 300)
        if base is not None:
            wait_ready(base, 300)
        print(f"services ready: signal in {ours.ready_s:.1f} s, trivial in "
              f"{trivial.ready_s:.1f} s", flush=True)
        import httpx

        meta = httpx.get(f"{ours.url}/metadata", timeout=10).json()
        if meta.get("model_version") != model_version or meta.get("model_source") != "primary":
            raise RuntimeError(f"the service does not serve the champion {model_version}: "
                               f"{json.dumps(meta)[:400]}")

        # the trader end to end (fills the service's window with consecutive real rows)
        ticks = budget.ticks
        print(f"trader: replaying {ticks} candles against {ours.url}/signal ...", flush=True)
        before = handler_seconds(ours.url)
        trader = run_trader(params, candles, ours.url, ticks, work, model_version)
        trader["service_handler_mean_ms"] = handler_mean_ms(before, handler_seconds(ours.url),
                                                            "signal")
        if trader["problems"]:
            raise RuntimeError(f"trader run: {trader['problems']}")
        base_trader = None
        if base is not None:
            print(f"trader: the same replay against the baseline {base.url}/signal ...",
                  flush=True)
            base_trader = run_trader(params, candles, base.url, ticks, work, model_version,
                                     name="trader_baseline", direct_sink=False,
                                     legacy_body=True)
            if base_trader["problems"]:
                raise RuntimeError(f"baseline trader run: {base_trader['problems']}")

        # a fresh online row, and a real signal from it
        fresh = write_fresh_row(params, candles)
        body = {"exchange": SERIES[0], "symbol": SERIES[1], "timeframe": SERIES[2]}
        answer = httpx.post(f"{ours.url}/signal", json=body, timeout=30).json()
        check_signal = signal_check(model_version, fresh)
        problem = check_signal(200, json.dumps(answer).encode())
        if problem:
            raise RuntimeError(f"/signal on the fresh row: {problem}")
        print(f"/signal on the fresh row ({fresh}Z): {answer['action']} "
              f"prob_up={answer['prob_up']:.4f} from {answer['model_version']}", flush=True)
        n_predict = budget.predict_candles or params.trade.predict_candles
        predict_body = {**body, "candles": candles_payload(candles.iloc[-n_predict:])}
        predicted = httpx.post(f"{ours.url}/predict", json=predict_body, timeout=30).json()
        if signal_check(model_version, fresh)(200, json.dumps(predicted).encode()):
            raise RuntimeError(f"/predict: {predicted}")

        values = [float(v) for v in np.random.default_rng(0).normal(size=64)]
        requests = {
            "trivial": RawHttp.request(trivial.port, "/mean", {"values": values}),
            "signal": RawHttp.request(ours.port, "/signal", body),
            "predict": RawHttp.request(ours.port, "/predict", predict_body),
        }
        check_trivial = trivial_check(sum(values) / len(values))
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in
                                                 ("t1", "s1", "t8", "s8", "p1", "b1", "b8")}
        if base is not None:
            requests["baseline"] = RawHttp.request(base.port, "/signal", body)
        for i in range(budget.rounds):
            print(f"load round {i + 1}/{budget.rounds} ...", flush=True)
            runs["t1"].append(load(trivial.port, requests["trivial"], check_trivial, 1,
                                   c1_n, c1_s))
            before = handler_seconds(ours.url)
            runs["s1"].append(load(ours.port, requests["signal"], check_signal, 1, c1_n, c1_s))
            runs["s1"][-1]["handler_mean_ms"] = handler_mean_ms(before, handler_seconds(ours.url),
                                                                "signal")
            runs["t8"].append(load(trivial.port, requests["trivial"], check_trivial, 8,
                                   c8_n, c8_s))
            runs["s8"].append(load(ours.port, requests["signal"], check_signal, 8, c8_n, c8_s))
            if base is not None:
                before = handler_seconds(base.url)
                runs["b1"].append(load(base.port, requests["baseline"], check_signal, 1,
                                       c1_n, c1_s))
                runs["b1"][-1]["handler_mean_ms"] = handler_mean_ms(
                    before, handler_seconds(base.url), "signal")
                runs["b8"].append(load(base.port, requests["baseline"], check_signal, 8,
                                       c8_n, c8_s))
            before = handler_seconds(ours.url)
            runs["p1"].append(load(ours.port, requests["predict"], check_signal, 1,
                                   pr_n, pr_s, warmup=3))
            runs["p1"][-1]["handler_mean_ms"] = handler_mean_ms(before, handler_seconds(ours.url),
                                                                "predict")
        merged = {k: merge(v) for k, v in runs.items() if v}
        bad = {k: (v["bad_answers"], v["problems"]) for k, v in merged.items() if v["bad_answers"]}
        if bad:
            raise RuntimeError(f"bad answers under load: {bad}")
        mem = {}
        for service in (ours, trivial, *([base] if base is not None else [])):
            m = memory(service)
            m["worker_uss_mb"] = sum(p["uss_mb"] for p in m["processes"]
                                     if p["role"] != "arbiter")
            mem[service.name] = m
        metrics_text = httpx.get(f"{ours.url}/metrics", timeout=10).text
    except BaseException:
        print(f"(service logs kept in {work})", file=sys.stderr)
        raise
    finally:
        for service in services:
            service.stop()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "merged": merged, "trader": trader, "base_trader": base_trader, "answer": answer,
        "fresh": fresh, "meta": meta, "memory": mem, "metrics_text": metrics_text,
        "n_predict": n_predict, "max_feature_age_bars": config.max_feature_age_bars,
        "ready_s": {"signal": ours.ready_s, "trivial": trivial.ready_s,
                    "baseline": base.ready_s if base is not None else None},
    }
