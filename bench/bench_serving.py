"""Serving benchmark: the signal service with the full ensemble vs a trivial BentoML service,
and the paper trader's candle-to-order latency against it (issue 5, section 3).

Run: ``python bench/bench_serving.py`` (about 4 minutes once the miniature project is cached;
the first run builds it: about 5 more minutes) or ``--quick`` (about 2 minutes). Writes
``bench/results/serving.json`` and prints a markdown table.

What runs, all over 127.0.0.1 in the same run:

* **the served model**: a miniature copy of the project (``tests/pipeline/mini_project.py``:
  the first 3,000 real Bitfinex 30m candles of BTC and ETH, the ``quick`` profile for training
  length, but the DEFAULT network sizes of Chronos-2 and the transformer from ``params.yaml``,
  so the served ensemble costs per request what the default pipeline's does) runs ingest
  .. feature-store and the model zoo in-process (baselines, LightGBM, Chronos, transformer,
  regime, stacked ensemble, compare), which registers ``candlecast-ensemble@champion`` in the
  copy's ``mlruns.db``. It is cached in ``bench/.cache/serving/`` (rebuilt when the project's
  params, the quick profile or the mini-project recipe change, or with ``--rebuild``).
* **the services**: ``bentoml serve service:SignalService --working-dir bentos`` (the project's
  own service, one worker, as shipped) with a serving config pointing at the copy, and a
  trivial BentoML 1.4 service (mean of 64 floats, same settings: one worker, sync API).
* **the trader** (``candlecast.trading.build_trader``, paper broker, the copy's Feast online
  store, SQLite state with ``synchronous=FULL`` as configured) replays real BTC candles, shifted
  so the last one closes at the latest 30-minute boundary, against the running service over
  HTTP (``/signal``). Its own per-tick timer (``Trader.latencies_s``: candle received -> Feast
  write -> signal call -> risk engine -> orders committed) is the end-to-end latency; the
  signal call and the Feast write are timed separately by wrapping the injected client/sink.
  In paper mode "order submitted" is the committed working order (no network order).
* then a **fresh online row** (the next candle's real features, written as the trader writes
  them) and ``/signal`` is checked to answer ``status: ok`` with ``prob_up`` in (0, 1) from the
  ensemble before anything is timed; every timed answer is checked the same way.
* ``/signal`` at concurrency 1 is reported twice against its p99 target: the load generator's
  repeated request (the same online row each time: after the first, the service's answer
  cache; the Feast read, staleness check and window still run) and the trader's calls (a new
  candle before every request: the whole ensemble runs).
* **load**: a small keep-alive HTTP/1.1 client on raw sockets (so the client's own cost is a
  few microseconds), bounded in requests and seconds per measurement; concurrency 1 (latency)
  and 8 (throughput, one connection per thread); trivial and ours interleaved, two rounds, so
  load spikes on the shared machine hit both.
* **memory**: RSS (and USS) of each service's process tree after the load.

The served series' staleness limit is raised (``max_feature_age_bars``) to cover the replayed
history: the sample candles are shifted in time but still span hours. The check itself is
unchanged and costs the same.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "serving.json"
CACHE = HERE / ".cache" / "serving"
MINI = CACHE / "mini"
MARKER = MINI / "bench_built.json"
MODELS = ["baselines", "lightgbm", "chronos", "transformer"]
SERIES = ("bitfinex", "BTC/USD", "30m")
TRIVIAL_SOURCE = '''"""Trivial BentoML 1.4 service of the serving benchmark (bench_serving.py)."""
import bentoml


@bentoml.service(name="bench_trivial", workers=1, traffic={"timeout": 30})
class Trivial:
    @bentoml.api
    def mean(self, values: list[float]) -> float:
        return sum(values) / len(values)
'''
TARGETS = {"signal_p99_c1_ms": 15.0, "signal_c8_throughput_vs_trivial": 0.5,
           "trader_p99_ms": 50.0}
#: the ``/signal`` p99 target applies to both: a repeated request (its exact model input
#: answered before: the answer cache) and a new candle before every request (the trader's
#: calls: Feast read, window, the whole ensemble)


# ----------------------------------------------------------------------------- the served model

#: network sizes the served model keeps from params.yaml (the quick profile shrinks them to
#: train in seconds; serving cost depends on them, training length does not)
ARCHITECTURE = {
    "chronos": ("context_length", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                "patch_size"),
    "transformer": ("window", "d_model", "num_heads", "num_layers", "dim_feedforward"),
}
RECIPE_VERSION = 2  # 2: default network sizes


def full_architecture() -> dict[str, dict[str, Any]]:
    """The Chronos-2 and transformer sizes of the default pipeline (params.yaml over the
    configs' defaults), to override the quick profile's small networks."""
    import yaml

    from candlecast.models.chronos_config import ChronosConfig
    from candlecast.models.transformer import TransformerConfig

    raw = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    out = {}
    for name, cls in (("chronos", ChronosConfig), ("transformer", TransformerConfig)):
        config = cls(**{k: v for k, v in (raw.get(name) or {}).items() if k in cls.model_fields})
        out[name] = {k: getattr(config, k) for k in ARCHITECTURE[name]}
    return out


def _recipe_hash() -> str:
    """What the cached miniature project depends on (code changes: use --rebuild)."""
    digest = hashlib.sha256(json.dumps([MODELS, RECIPE_VERSION]).encode())
    for path in ("params.yaml", "profiles/quick.yaml", "tests/pipeline/mini_project.py"):
        digest.update((REPO / path).read_bytes())
    return digest.hexdigest()[:16]


def build_mini_project() -> dict[str, Any]:
    """(In a child process.) The miniature project with the whole zoo and a champion."""
    sys.path.insert(0, str(REPO / "tests" / "pipeline"))
    from mini_project import make_mini_project
    from mlflow.tracking import MlflowClient

    from candlecast.config import load_params
    from candlecast.pipeline.paths import Paths
    from candlecast.pipeline.runner import run_stage, zoo_plan

    if MINI.exists():
        shutil.rmtree(MINI)
    started = time.time()
    make_mini_project(REPO, MINI, overrides={"models": {"run": MODELS, **full_architecture()}})
    paths = Paths(MINI)
    params = load_params(paths.params)
    stages: dict[str, float] = {}
    plan = [(s, None) for s in ("ingest", "validate", "features", "feature-store")]
    for stage, arg in plan + zoo_plan(params):
        t0 = time.time()
        run_stage(stage, params, paths, arg)
        stages[f"{stage}@{arg}" if arg else stage] = round(time.time() - t0, 1)
        print(f"  built {stage}{'@' + arg if arg else ''} in {stages[list(stages)[-1]]} s",
              flush=True)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{MINI / 'mlruns.db'}")
    champion = MlflowClient().get_model_version_by_alias(params.ensemble.registered_model,
                                                         "champion")
    marker = {"recipe": _recipe_hash(), "models": MODELS, "architecture": full_architecture(),
              "model_version": f"{params.ensemble.registered_model}/{champion.version}",
              "build_seconds": round(time.time() - started, 1), "stages_s": stages,
              "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    MARKER.write_text(json.dumps(marker, indent=2) + "\n")
    return marker


def served_project(rebuild: bool) -> tuple[dict[str, Any], bool]:
    """The cached miniature project's marker, building it (in a child process) if needed."""
    if not rebuild and MARKER.exists():
        marker = json.loads(MARKER.read_text())
        if marker.get("recipe") == _recipe_hash():
            return marker, True
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "build.log"
    print(f"building the miniature project in {MINI} (log: {log}) ...", flush=True)
    with log.open("wb") as handle:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--build-only"],
                              stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not MARKER.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"building the miniature project failed:\n{tail}")
    return json.loads(MARKER.read_text()), False


# ----------------------------------------------------------------------------- services

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path
    started: float
    ready_s: float | None = None
    pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def tree(self) -> list[Any]:
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.pids.update(p.pid for p in procs)
        return procs

    def stop(self) -> None:
        """SIGTERM to ``bentoml serve`` (it stops its workers), SIGKILL after 20 s; then any
        process of its tree seen earlier that is still alive (by pid)."""
        import psutil

        self.tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in self.pids - {self.process.pid}:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def start_service(name: str, target: str, working_dir: Path, env: dict[str, str],
                  logs: Path) -> Service:
    port = free_port()
    log_path = logs / f"{name}.log"
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True",
                "BENTOML_HOME": str(CACHE / "bentoml_home"), **env}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [str(bentoml_cli), "serve", target, "--working-dir", str(working_dir),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, env=full_env, cwd=logs)
    return Service(name, process, port, log_path, time.monotonic())


def wait_ready(service: Service, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name}: bentoml serve exited:\n{service.log_tail()}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                service.ready_s = time.monotonic() - service.started
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} not ready after {timeout:.0f} s:\n{service.log_tail()}")


def memory(service: Service) -> dict[str, Any]:
    """RSS and USS (memory only this process has) of each process of the service's tree."""
    procs = []
    for proc in service.tree():
        try:
            info = proc.memory_full_info()
            cmd = " ".join(proc.cmdline())
        except Exception:  # noqa: BLE001 - a process may exit meanwhile
            continue
        role = "arbiter" if "bentoml serve" in cmd or "bentoml_cli" in cmd else \
            "worker" if "serve_http" in cmd or "_bentoml_impl" in cmd else "other"
        procs.append({"pid": proc.pid, "role": role, "rss_mb": info.rss / 2**20,
                      "uss_mb": info.uss / 2**20, "cmd": cmd[:160]})
    return {"processes": procs, "rss_mb_total": sum(p["rss_mb"] for p in procs),
            "uss_mb_total": sum(p["uss_mb"] for p in procs)}


# ----------------------------------------------------------------------------- load generator

class RawHttp:
    """One keep-alive HTTP/1.1 connection; POSTs pre-built requests, reads status and body."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    @staticmethod
    def request(port: int, path: str, payload: object) -> bytes:
        body = json.dumps(payload).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: keep-alive\r\n\r\n").encode() + body

    def _fill(self) -> None:
        chunk = self.sock.recv(262_144)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def post(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip()
        if b"content-length" in headers:
            return status, self._take(int(headers[b"content-length"]))
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    self._line()
                    return status, b"".join(parts)
                parts.append(self._take(size))
                self._take(2)
        raise ConnectionError(f"response without length: {head[:200]!r}")

    def close(self) -> None:
        self.sock.close()


def summarize(latencies_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(latencies_s, dtype=float) * 1e3
    if len(ms) == 0:
        return {"n": 0}
    p = np.percentile(ms, [50, 90, 99])
    return {"n": int(len(ms)), "mean_ms": float(ms.mean()), "p50_ms": float(p[0]),
            "p90_ms": float(p[1]), "p99_ms": float(p[2]), "max_ms": float(ms.max())}


def load(port: int, raw: bytes, check: Callable[[int, bytes], str | None], concurrency: int,
         max_requests: int, max_seconds: float, warmup: int = 20) -> dict[str, Any]:
    """``concurrency`` threads, one connection each, send ``raw`` back to back until
    ``max_requests`` in all or ``max_seconds``. Every answer goes through ``check`` (None = good,
    else the problem); the first problems are kept."""
    warm = RawHttp(port)
    for _ in range(warmup):
        status, body = warm.post(raw)
        problem = check(status, body)
        if problem:
            raise RuntimeError(f"warm-up answer rejected: {problem}")
    warm.close()
    lock = threading.Lock()
    issued = [0]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    problems: list[str] = []
    bad = [0]
    deadline = time.perf_counter() + max_seconds

    def worker(i: int) -> None:
        client = RawHttp(port)
        mine = latencies[i]
        try:
            while True:
                with lock:
                    if issued[0] >= max_requests or time.perf_counter() >= deadline:
                        return
                    issued[0] += 1
                t0 = time.perf_counter()
                status, body = client.post(raw)
                mine.append(time.perf_counter() - t0)
                problem = check(status, body)
                if problem:
                    with lock:
                        bad[0] += 1
                        if len(problems) < 5:
                            problems.append(problem)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for chunk in latencies for x in chunk]
    return {"concurrency": concurrency, **summarize(flat), "seconds": elapsed,
            "throughput_rps": len(flat) / elapsed, "bad_answers": bad[0], "problems": problems,
            "_samples": flat}


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the samples of several rounds of one measurement."""
    flat = [x for r in rounds for x in r["_samples"]]
    seconds = sum(r["seconds"] for r in rounds)
    return {"concurrency": rounds[0]["concurrency"], **summarize(flat), "seconds": seconds,
            "throughput_rps": len(flat) / seconds,
            "throughput_rps_by_round": [r["throughput_rps"] for r in rounds],
            "p50_ms_by_round": [r["p50_ms"] for r in rounds],
            "p99_ms_by_round": [r["p99_ms"] for r in rounds],
            "bad_answers": sum(r["bad_answers"] for r in rounds),
            "handler_mean_ms_by_round": [r.get("handler_mean_ms") for r in rounds],
            "problems": [p for r in rounds for p in r["problems"]][:5]}


def handler_seconds(url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of ``candlecast_request_duration_seconds`` by endpoint: the time spent in
    the service's own handler (Feast read, window, model, risk), without HTTP and BentoML."""
    import httpx

    out: dict[str, list[float]] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for suffix, i in (("_sum{", 0), ("_count{", 1)):
            name = "candlecast_request_duration_seconds" + suffix
            if line.startswith(name) and 'code="200"' in line:
                endpoint = line.split('endpoint="', 1)[1].split('"', 1)[0]
                out.setdefault(endpoint, [0.0, 0.0])[i] += float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def handler_mean_ms(before: dict[str, tuple[float, float]],
                    after: dict[str, tuple[float, float]], endpoint: str) -> float | None:
    s0, n0 = before.get(endpoint, (0.0, 0.0))
    s1, n1 = after.get(endpoint, (0.0, 0.0))
    return None if n1 <= n0 else 1e3 * (s1 - s0) / (n1 - n0)


def signal_check(model_version: str, feature_time: str | None
                 ) -> Callable[[int, bytes], str | None]:
    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"HTTP {status}: {body[:200]!r}"
        answer = json.loads(body)
        prob = answer.get("prob_up")
        if answer.get("status") != "ok" or not isinstance(prob, float) or not 0 < prob < 1:
            return f"not a signal: {answer}"
        if answer.get("model_version") != model_version:
            return f"model {answer.get('model_version')} is not {model_version}"
        if feature_time is not None and not str(answer.get("feature_timestamp", "")).startswith(
                feature_time):
            return f"feature_timestamp {answer.get('feature_timestamp')} != {feature_time}"
        return None
    return check


def trivial_check(expected: float) -> Callable[[int, bytes], str | None]:
    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"HTTP {status}: {body[:200]!r}"
        if abs(float(json.loads(body)) - expected) > 1e-9:
            return f"wrong mean {body[:60]!r}"
        return None
    return check


# ----------------------------------------------------------------------------- data and trader

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


# ----------------------------------------------------------------------------- report

def ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"


def mean_of(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def markdown(r: dict[str, Any]) -> str:
    t, s, p, tr = r["trivial"], r["signal"], r["predict"], r["trader"]
    ratio = r["ratios"]
    ok = lambda met: "met" if met else "NOT met"  # noqa: E731
    lines = [
        "| measurement | ours | trivial BentoML (same run) | ratio | target |",
        "|---|---|---|---|---|",
        f"| `/signal` c=1 p50 / p99 | {ms(s['c1']['p50_ms'])} / {ms(s['c1']['p99_ms'])} | "
        f"{ms(t['c1']['p50_ms'])} / {ms(t['c1']['p99_ms'])} | p99 x{ratio['signal_c1_p99']:.1f} "
        f"| p99 < 15 ms: {ok(r['targets_met']['signal_p99_c1'])} |",
        f"| ... of which in the service's handler (mean, Prometheus) | "
        f"{ms(mean_of(s['c1']['handler_mean_ms_by_round']))} | | | |",
        f"| `/signal` c=1, a new candle before every request (the trader's calls), p50 / p99 | "
        f"{ms(tr['signal_call']['p50_ms'])} / {ms(tr['signal_call']['p99_ms'])} | | | "
        f"p99 < 15 ms: {ok(r['targets_met']['signal_p99_c1_new_candle'])} |",
        f"| `/signal` c=1 throughput | {s['c1']['throughput_rps']:.0f} req/s | "
        f"{t['c1']['throughput_rps']:.0f} req/s | {ratio['signal_c1_throughput']:.2f} | |",
        f"| `/signal` c=8 throughput (p50 / p99) | {s['c8']['throughput_rps']:.0f} req/s "
        f"({ms(s['c8']['p50_ms'])} / {ms(s['c8']['p99_ms'])}) | {t['c8']['throughput_rps']:.0f} "
        f"req/s ({ms(t['c8']['p50_ms'])} / {ms(t['c8']['p99_ms'])}) | "
        f"{ratio['signal_c8_throughput']:.2f} | >= 0.50: "
        f"{ok(r['targets_met']['signal_c8_throughput'])} |",
        f"| `/predict` c=1, {p['candles']} candles, p50 / p99 | {ms(p['c1']['p50_ms'])} / "
        f"{ms(p['c1']['p99_ms'])} ({p['c1']['throughput_rps']:.0f} req/s; handler mean "
        f"{ms(mean_of(p['c1']['handler_mean_ms_by_round']))}) | | "
        f"p50 x{ratio['predict_c1_p50']:.1f} | |",
        f"| trader candle -> order committed, {tr['ticks']} ticks, p50 / p99 / max | "
        f"{ms(tr['latency']['p50_ms'])} / {ms(tr['latency']['p99_ms'])} / "
        f"{ms(tr['latency']['max_ms'])} | | | p99 < 50 ms: {ok(r['targets_met']['trader_p99'])} |",
        f"| ... of which `/signal` call (httpx; the row above) p50 / p99 | "
        f"{ms(tr['signal_call']['p50_ms'])} / {ms(tr['signal_call']['p99_ms'])} | | | |",
        f"| ... ... in the service's handler (mean, Prometheus) | "
        f"{ms(tr.get('service_handler_mean_ms'))} | | | |",
        f"| ... Feast online write p50 / p99 | {ms(tr['feast_write']['p50_ms'])} / "
        f"{ms(tr['feast_write']['p99_ms'])} | | | |",
        f"| ... features + risk + SQLite commit p50 / p99 | "
        f"{ms(tr['rest_features_risk_commit']['p50_ms'])} / "
        f"{ms(tr['rest_features_risk_commit']['p99_ms'])} | | | |",
        f"| service RSS (all processes; worker USS) | {r['memory']['signal']['rss_mb_total']:.0f}"
        f" MB ({r['memory']['signal']['worker_uss_mb']:.0f} MB) | "
        f"{r['memory']['trivial']['rss_mb_total']:.0f} MB "
        f"({r['memory']['trivial']['worker_uss_mb']:.0f} MB) | "
        f"x{ratio['rss']:.1f} | |",
    ]
    return "\n".join(lines)


def markdown_baseline(r: dict[str, Any]) -> str:
    """Old (``--baseline-src``) vs new, same run."""
    b, s, tr = r["baseline"], r["signal"], r["trader"]
    bt = b["trader"]
    rows = [
        "| same run | before (baseline src) | after | |",
        "|---|---|---|---|",
        f"| `/signal` c=1 p50 / p99 | {ms(b['c1']['p50_ms'])} / {ms(b['c1']['p99_ms'])} | "
        f"{ms(s['c1']['p50_ms'])} / {ms(s['c1']['p99_ms'])} | repeated request: a cache hit "
        "after |",
        f"| ... handler mean | {ms(mean_of(b['c1']['handler_mean_ms_by_round']))} | "
        f"{ms(mean_of(s['c1']['handler_mean_ms_by_round']))} | |",
        f"| `/signal` c=8 throughput | {b['c8']['throughput_rps']:.0f} req/s | "
        f"{s['c8']['throughput_rps']:.0f} req/s | trivial "
        f"{r['trivial']['c8']['throughput_rps']:.0f} |",
        f"| trader candle -> order p50 / p99 | {ms(bt['latency']['p50_ms'])} / "
        f"{ms(bt['latency']['p99_ms'])} | {ms(tr['latency']['p50_ms'])} / "
        f"{ms(tr['latency']['p99_ms'])} | every tick a new candle (no cache hit) |",
        f"| ... `/signal` call p50 / p99 | {ms(bt['signal_call']['p50_ms'])} / "
        f"{ms(bt['signal_call']['p99_ms'])} | {ms(tr['signal_call']['p50_ms'])} / "
        f"{ms(tr['signal_call']['p99_ms'])} | |",
        f"| ... Feast online write p50 / p99 | {ms(bt['feast_write']['p50_ms'])} / "
        f"{ms(bt['feast_write']['p99_ms'])} | {ms(tr['feast_write']['p50_ms'])} / "
        f"{ms(tr['feast_write']['p99_ms'])} | |",
    ]
    return "\n".join(rows)


def strip_samples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_samples(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [strip_samples(v) for v in value]
    return value


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer requests, one round, a shorter replay (~2 minutes)")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the cached miniature project (after code changes)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--trader-ticks", type=int)
    parser.add_argument("--predict-candles", type=int,
                        help="candles per /predict request (default: trade.predict_candles)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline-src", type=Path,
                        help="a copy of an older src/ (e.g. before an optimisation): also serve "
                        "it (PYTHONPATH) and measure it in the same rounds, with a trader "
                        "using the DataFrame Feast write")
    args = parser.parse_args(argv)
    if args.build_only:
        build_mini_project()
        return {}
    rounds = args.rounds or (1 if args.quick else 2)
    ticks = args.trader_ticks or (150 if args.quick else 300)
    c1_n, c1_s = (300, 4.0) if args.quick else (1500, 12.0)
    c8_n, c8_s = (600, 4.0) if args.quick else (3000, 12.0)
    pr_n, pr_s = (60, 4.0) if args.quick else (300, 12.0)

    started = time.time()
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    marker, cached = served_project(args.rebuild)
    build_s = time.time() - started
    model_version = marker["model_version"]
    print(f"miniature project {'cached' if cached else 'built'} ({build_s:.0f} s); "
          f"champion {model_version}", flush=True)

    import pandas as pd

    from candlecast.config import load_params
    from candlecast.data.schema import SeriesId
    from candlecast.data.store import CandleStore
    from candlecast.pipeline.package_stage import serving_config
    from candlecast.pipeline.paths import Paths
    from candlecast.serving.config import write_serving_config
    from candlecast.trading.signals import candles_payload

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
        if args.baseline_src is not None:
            base = start_service("signal_baseline", "service:SignalService", REPO / "bentos",
                                 {"CANDLECAST_SERVING_CONFIG": str(config_path),
                                  "PYTHONPATH": str(args.baseline_src.resolve())}, work)
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
        n_predict = args.predict_candles or params.trade.predict_candles
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
        for i in range(rounds):
            print(f"load round {i + 1}/{rounds} ...", flush=True)
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

    s1, s8, t1, t8, p1 = (merged[k] for k in ("s1", "s8", "t1", "t8", "p1"))
    result: dict[str, Any] = {
        "targets": TARGETS,
        "targets_met": {
            "signal_p99_c1": s1["p99_ms"] < TARGETS["signal_p99_c1_ms"],
            "signal_p99_c1_new_candle": trader["signal_call"]["p99_ms"]
            < TARGETS["signal_p99_c1_ms"],
            "signal_c8_throughput": s8["throughput_rps"] / t8["throughput_rps"]
            >= TARGETS["signal_c8_throughput_vs_trivial"],
            "trader_p99": trader["latency"]["p99_ms"] < TARGETS["trader_p99_ms"],
        },
        "ratios": {
            "signal_c1_p50": s1["p50_ms"] / t1["p50_ms"],
            "signal_c1_p99": s1["p99_ms"] / t1["p99_ms"],
            "signal_c1_throughput": s1["throughput_rps"] / t1["throughput_rps"],
            "signal_c8_throughput": s8["throughput_rps"] / t8["throughput_rps"],
            "signal_c8_throughput_by_round": [
                a / b for a, b in zip(s8["throughput_rps_by_round"],
                                      t8["throughput_rps_by_round"], strict=True)],
            "predict_c1_p50": p1["p50_ms"] / t1["p50_ms"],
            "rss": mem["signal"]["rss_mb_total"] / mem["trivial"]["rss_mb_total"],
        },
        "signal": {"c1": s1, "c8": s8, "example": answer},
        "trivial": {"c1": t1, "c8": t8, "request": "POST /mean {values: 64 floats}"},
        "predict": {"c1": p1, "candles": n_predict},
        "trader": trader,
        "memory": mem,
        "service": {
            "model_version": model_version, "window_rows": meta.get("window_rows"),
            "model_source": meta.get("model_source"), "flavor": meta.get("flavor"),
            "ready_s": ours.ready_s, "trivial_ready_s": trivial.ready_s,
            "fresh_row_close": fresh + "Z", "max_feature_age_bars": config.max_feature_age_bars,
            "zoo": MODELS, "workers": 1,
            "accelerated_models": meta.get("accelerated_models"),
            "candlecast_request_duration_series": sum(
                line.startswith("candlecast_request_duration_seconds_count")
                for line in metrics_text.splitlines()),
        },
        "load_generator": {
            "client": "raw-socket HTTP/1.1 keep-alive, one connection per thread",
            "rounds": rounds, "c1": {"max_requests": c1_n, "max_seconds": c1_s},
            "c8": {"max_requests": c8_n, "max_seconds": c8_s},
            "predict": {"max_requests": pr_n, "max_seconds": pr_s}, "quick": args.quick,
        },
        "mini_project": {"cached": cached, **marker},
    }
    if base is not None:
        b1, b8 = merged["b1"], merged["b8"]
        result["baseline"] = {
            "src": str(args.baseline_src), "c1": b1, "c8": b8, "trader": base_trader,
            "ready_s": base.ready_s, "memory": mem.get("signal_baseline"),
            "ratios": {"signal_c1_p50_new_over_old": s1["p50_ms"] / b1["p50_ms"],
                       "signal_c1_p99_new_over_old": s1["p99_ms"] / b1["p99_ms"],
                       "signal_c8_throughput_vs_trivial": b8["throughput_rps"]
                       / t8["throughput_rps"],
                       "trader_p99_new_over_old": trader["latency"]["p99_ms"]
                       / base_trader["latency"]["p99_ms"]},
        }
    result["environment"] = {
        "python": sys.version.split()[0], "bentoml": version("bentoml"),
        "feast": version("feast"), "mlflow": version("mlflow"), "httpx": version("httpx"),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average_1m_at_start": load_avg,
        "load_average_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "wall_seconds": time.time() - started,
    }
    shutil.rmtree(work, ignore_errors=True)
    result = strip_samples(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(result))
    if "baseline" in result:
        print(markdown_baseline(result))
    print(f"\nwritten to {args.out}")
    return result


if __name__ == "__main__":
    main()
