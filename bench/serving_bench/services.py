"""``bentoml serve`` processes of the serving benchmark: the project's service and a trivial
BentoML 1.4 service (same settings), their readiness and the memory of their process trees."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving_bench import CACHE

TRIVIAL_SOURCE = '''"""Trivial BentoML 1.4 service of the serving benchmark (bench_serving.py)."""
import bentoml


@bentoml.service(name="bench_trivial", workers=1, traffic={"timeout": 30})
class Trivial:
    @bentoml.api
    def mean(self, values: list[float]) -> float:
        return sum(values) / len(values)
'''


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
