"""Prefect flows of the operations loop (deployed by ``prefect.yaml``): thin shells around
``candlecast.ops``.

* ``refresh`` (hourly): new candles (replayed sample chunk, or ccxt) -> validate -> features ->
  feature store; optionally probes the signal service.
* ``drift_check`` (daily): Evidently report + verdict; emits ``candlecast.drift.detected``
  (the ``retrain`` deployment's trigger) and alerts when drift is found.
* ``retrain`` (weekly, and on drift): challenger on the newest window, champion/challenger
  backtest + bootstrap decision; emits ``candlecast.retrain.finished`` (the trigger of
  ``backtest-report``).
* ``backtest_report``: champion vs challenger reports of the last retrain's window.

Transient failures (network, a locked SQLite store, timeouts) are retried with exponential
backoff; deterministic errors (bad data, bad params) fail at once.
"""

from __future__ import annotations

import os
import sqlite3
import sys

from candlecast.runtime import set_offline_defaults, set_reproducible_numerics

set_offline_defaults()  # before Prefect/MLflow/Feast are imported: no telemetry, patience
set_reproducible_numerics()  # before torch/numpy load: the same bits on every AVX2 CPU

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from candlecast.config import load_params  # noqa: E402
from candlecast.exchange.errors import RetriesExhaustedError, TransientExchangeError  # noqa: E402
from candlecast.pipeline.paths import Paths  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PARAMS = str(ROOT / "params.yaml")

#: exception types worth a retry: the network, timeouts, a busy SQLite store, and the
#: exchange's transient failures (candlecast.exchange turns every ccxt error into its own
#: types; RetriesExhaustedError: the ingest's own retries gave up, the task tries later)
TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError,
                                              sqlite3.OperationalError, TransientExchangeError,
                                              RetriesExhaustedError)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    # httpx network errors (alerts, the service) without importing it here
    return bool(names & {"TransportError", "TimeoutException"})


def retry_if_transient(task_obj: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient failures."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - inspecting the failure
        return _transient(exc)
    return False


RETRYING = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=10),
            "retry_jitter_factor": 0.5, "retry_condition_fn": retry_if_transient}


def _context(root: str, params_file: str) -> tuple[Any, Paths]:
    return load_params(params_file), Paths(Path(root))


def _notifier(params: Any) -> Any:
    from candlecast.monitoring.alerts import notifier_from_env

    return notifier_from_env(os.environ, params.ops.alerts)


# ---------------------------------------------------------------------------- refresh
@task(name="ingest-new-candles", timeout_seconds=1800, **RETRYING)
def ingest_new_candles(root: str, params_file: str, replay: bool | None,
                       feed: str = "poll") -> dict:
    from candlecast.ops.refresh import ingest_step

    params, paths = _context(root, params_file)
    result = ingest_step(params, paths, replay, feed)
    get_run_logger().info("new candles: %s", {k: v for k, v in result.items()
                                              if k != "series"})
    return result


@task(name="pipeline-stage", timeout_seconds=1800, **RETRYING)
def pipeline_stage(root: str, params_file: str, stage: str) -> dict:
    from candlecast.pipeline.runner import run_stage

    params, paths = _context(root, params_file)
    return run_stage(stage, params, paths)


@task(name="check-signal-service", timeout_seconds=60)
def check_signal_service(root: str, params_file: str, url: str) -> dict:
    from candlecast.monitoring.alerts import check_service

    params, _ = _context(root, params_file)
    status = check_service(url, _notifier(params))
    get_run_logger().info("signal service %s: ready=%s", url, status["ready"])
    return status


@flow(name="candlecast-refresh", log_prints=True, timeout_seconds=3600)
def refresh(root: str = str(ROOT), params_file: str = PARAMS, replay: bool | None = None,
            service_url: str | None = None, feed: str = "poll") -> dict:
    """New candles -> validate -> features -> feature store (offline and online). ``feed``:
    ``poll`` (ccxt REST or the replay) or ``stream`` (what the streaming trader stored)."""
    from candlecast.ops.refresh import AFTER_INGEST

    out = {"ingest": ingest_new_candles(root, params_file, replay, feed)}
    for stage in AFTER_INGEST:
        out[stage] = pipeline_stage.with_options(name=stage)(root, params_file, stage)
    if service_url:
        out["service"] = check_signal_service(root, params_file, service_url)
    return out


# ---------------------------------------------------------------------------- drift
@task(name="drift-check", timeout_seconds=1800, **RETRYING)
def drift_check_task(root: str, params_file: str) -> dict:
    from candlecast.ops.drift_check import run_drift_check

    params, paths = _context(root, params_file)
    return run_drift_check(params, paths, _notifier(params))


@flow(name="candlecast-drift-check", log_prints=True, timeout_seconds=3600)
def drift_check(root: str = str(ROOT), params_file: str = PARAMS) -> dict:
    """Evidently drift report; on drift, emit the event the ``retrain`` deployment waits for."""
    from prefect.events import emit_event

    verdict = drift_check_task(root, params_file)
    logger = get_run_logger()
    if verdict.get("drifted"):
        emit_event("candlecast.drift.detected",
                   resource={"prefect.resource.id": f"candlecast.project.{Path(root).name}"},
                   payload={k: verdict.get(k) for k in ("drift_share", "reasons", "report")})
        logger.warning("drift detected: %s", verdict.get("reasons"))
    else:
        logger.info("no drift (%s)", verdict.get("status"))
    return verdict


# ---------------------------------------------------------------------------- retrain
@task(name="prepare-retrain-window", timeout_seconds=600, **RETRYING)
def prepare_window(root: str, params_file: str) -> dict:
    from candlecast.ops.retrain import prepare_retrain

    params, paths = _context(root, params_file)
    return prepare_retrain(params, paths)


@task(name="train-challenger-stage", timeout_seconds=4 * 3600, **RETRYING)
def train_challenger_stage(root: str, params_file: str, stage: str, arg: str | None) -> dict:
    from candlecast.ops.retrain import train_step

    params, paths = _context(root, params_file)
    return train_step(params, paths, stage, arg)


@task(name="champion-vs-challenger", timeout_seconds=3600, **RETRYING)
def champion_vs_challenger(root: str, params_file: str) -> dict:
    from candlecast.ops.retrain import evaluate_and_decide

    params, paths = _context(root, params_file)
    return evaluate_and_decide(params, paths, _notifier(params))


@flow(name="candlecast-retrain", log_prints=True, timeout_seconds=8 * 3600)
def retrain(root: str = str(ROOT), params_file: str = PARAMS) -> dict:
    """Challenger on the newest window; promoted only if it beats the champion out of sample."""
    from prefect.events import emit_event

    from candlecast.ops.retrain import train_plan

    params, _ = _context(root, params_file)
    plan = prepare_window(root, params_file)
    for stage, arg in train_plan(params):
        name = f"challenger-{stage}" + (f"-{arg}" if arg else "")
        train_challenger_stage.with_options(name=name)(root, params_file, stage, arg)
    result = champion_vs_challenger(root, params_file)
    decision = result["decision"]
    get_run_logger().info("challenger v%s %s: %s", decision["challenger_version"],
                          decision["outcome"], decision["reason"])
    emit_event("candlecast.retrain.finished",
               resource={"prefect.resource.id": f"candlecast.project.{Path(root).name}"},
               payload={"outcome": decision["outcome"], "ops_run_id": result["ops_run_id"]})
    return {"plan": plan, **result}


# ---------------------------------------------------------------------------- report
@task(name="backtest-report", timeout_seconds=1800, **RETRYING)
def backtest_report_task(root: str, params_file: str) -> dict:
    from candlecast.ops.retrain import backtest_report

    params, paths = _context(root, params_file)
    return backtest_report(params, paths)


@flow(name="candlecast-backtest-report", log_prints=True, timeout_seconds=3600)
def backtest_report(root: str = str(ROOT), params_file: str = PARAMS) -> dict:
    """Champion vs challenger backtest reports (HTML) of the last retrain's window."""
    return backtest_report_task(root, params_file)


FLOWS = {"refresh": refresh, "drift-check": drift_check, "retrain": retrain,
         "backtest-report": backtest_report}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in FLOWS:
        print(f"usage: flows/ops.py {{{'|'.join(FLOWS)}}}", file=sys.stderr)
        raise SystemExit(2)
    FLOWS[sys.argv[1]]()
