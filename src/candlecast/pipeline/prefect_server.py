"""One local Prefect API server for a whole ``dvc repro`` (``candlecast repro``).

Without a configured server, every Prefect flow starts (and stops) a temporary API server of
its own: 10-20 s per DVC stage. ``candlecast repro`` starts ``prefect server start`` once on
127.0.0.1, runs ``dvc repro`` with ``PREFECT_API_URL`` pointing at it, and stops it; the flow
runs stay in ``PREFECT_HOME``'s database, so a later ``prefect server start`` shows them in the
UI. When ``PREFECT_API_URL`` is already set (your own server), it is used as is.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def local_prefect_server(
    env: Mapping[str, str] | None = None, timeout_s: float = 300.0, log: Path | None = None
) -> Iterator[str]:
    """Start ``prefect server start`` on a free local port (no background services: nothing
    is scheduled here) and yield its API URL; the server is stopped on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--no-services", "--analytics-off"],
        env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited with code {process.returncode}"
                                   + (f"; see {log}" if log else ""))
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not answer {url}/health in {timeout_s} s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def command_env(environ: Mapping[str, str], api_url: str | None = None) -> dict[str, str]:
    """The stages' environment: this interpreter's bin folder first on PATH (``dvc.yaml`` runs
    ``python flows/pipeline.py``, which must be the project's environment even when it is not
    activated) and ``PREFECT_API_URL`` when given."""
    env = dict(environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def dvc_up_to_date(dvc: str, cwd: Path) -> bool:
    """``dvc status --quiet`` exits 0: every stage is up to date, ``dvc repro`` would run none
    (no Prefect server is needed for that)."""
    done = subprocess.run([dvc, "status", "--quiet"], cwd=cwd, env=command_env(os.environ),
                          capture_output=True, check=False)
    return done.returncode == 0


def run_with_prefect_server(command: Sequence[str], cwd: Path, log: Path | None = None) -> int:
    """Run ``command`` (e.g. ``dvc repro``) with one Prefect API server for all its flows."""
    if os.environ.get("PREFECT_API_URL"):
        return subprocess.call(list(command), cwd=cwd, env=command_env(os.environ))
    with local_prefect_server(log=log) as url:
        print(f"Prefect API server for this run: {url}", file=sys.stderr, flush=True)
        return subprocess.call(list(command), cwd=cwd, env=command_env(os.environ, url))
