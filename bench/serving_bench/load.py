"""The load generator of the serving benchmark: one keep-alive HTTP/1.1 connection per thread on
raw sockets (so the client's own cost is a few microseconds), latency statistics, pooling of
rounds, the service's own handler time from its Prometheus metrics, and the answer checks every
timed response goes through."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


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
