"""``candlecast ops ...``: the operations loop from the command line (the Prefect flows in
``flows/ops.py`` call the same functions)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

ops_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

RootOption = Annotated[Path, typer.Option("--root", help="Project root.")]
ParamsOption = Annotated[Path | None, typer.Option("--params", help="params.yaml to use.")]


def _context(root: Path, params_file: Path | None) -> tuple[Any, Any]:
    from candlecast.config import load_params
    from candlecast.pipeline.paths import Paths

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("candlecast").setLevel(logging.INFO)
    return load_params(params_file or root / "params.yaml"), Paths(root.resolve())


def _notifier(params: Any) -> Any:
    from candlecast.monitoring.alerts import notifier_from_env

    return notifier_from_env(os.environ, params.ops.alerts)  # the edge reads the environment


def _done(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def _guard(func: Any) -> Any:
    try:
        return func()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc


@ops_app.command("replay-init")
def replay_init_command(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """Store the bundled sample up to the replay cut (the last ops.replay.holdout_bars bars are
    held back), then validate, features and feature store."""
    from candlecast.ops.refresh import AFTER_INGEST
    from candlecast.ops.replay import replay_init
    from candlecast.pipeline.runner import run_stage

    loaded, paths = _context(root, params)

    def run() -> dict[str, Any]:
        out = {"replay-init": replay_init(loaded, paths, loaded.ops.replay)}
        for stage in AFTER_INGEST:
            out[stage] = run_stage(stage, loaded, paths)
        return out

    _done(_guard(run))


@ops_app.command("refresh")
def refresh_command(
    root: RootOption = Path(),
    params: ParamsOption = None,
    feed: Annotated[str, typer.Option(
        "--feed", help="poll: the replayed chunk or ccxt REST; stream: the candles the "
        "streaming trader stored (REST only for series it lags on).")] = "poll",
) -> None:
    """New candles (the next replayed chunk, or ccxt) -> validate -> features -> feature store."""
    from candlecast.ops.refresh import run_refresh

    loaded, paths = _context(root, params)
    _done(_guard(lambda: run_refresh(loaded, paths, feed=feed)))


@ops_app.command("drift-check")
def drift_check_command(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """Evidently drift report of the recent window against the champion's training data."""
    from candlecast.ops.drift_check import run_drift_check

    loaded, paths = _context(root, params)
    _done(_guard(lambda: run_drift_check(loaded, paths, _notifier(loaded))))


@ops_app.command("retrain")
def retrain_command(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """Train a challenger on the newest window; promote it only if it beats the champion."""
    from candlecast.ops.retrain import run_retrain

    loaded, paths = _context(root, params)
    _done(_guard(lambda: run_retrain(loaded, paths, _notifier(loaded))))


@ops_app.command("backtest-report")
def backtest_report_command(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """Champion vs challenger backtest reports of the last retrain's evaluation window."""
    from candlecast.ops.retrain import backtest_report

    loaded, paths = _context(root, params)
    _done(_guard(lambda: backtest_report(loaded, paths)))


# promote and rollback share their shape (context, MLflow client, one alias move, guarded):
# two commands of the same kind, the common part is in _context/_guard/_done.
@ops_app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="Model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "manual",
    root: RootOption = Path(), params: ParamsOption = None,
) -> None:
    """Make a registered ensemble version the champion by hand (recorded in the history)."""
    from candlecast.ops.context import setup_mlflow
    from candlecast.tracking.aliases import move_champion

    loaded, paths = _context(root, params)

    def run() -> dict[str, Any]:
        client = setup_mlflow(loaded, paths)
        name = loaded.ensemble.registered_model
        client.get_model_version(name, version)  # fails if unknown
        previous = move_champion(client, name, version, f"manual: {reason}", actor="cli")
        if previous != version:
            _notifier(loaded).notify("champion_promoted", f"v{version} made champion by hand "
                                     f"(was v{previous}): {reason}", champion=version,
                                     previous=previous or "")
        return {"champion": version, "previous": previous}

    _done(_guard(run))


@ops_app.command("rollback")
def rollback_command(
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "manual rollback",
    root: RootOption = Path(), params: ParamsOption = None,
) -> None:
    """Restore the previous champion (ops.previous_champion of the current one)."""
    from mlflow.exceptions import MlflowException

    from candlecast.ops.context import setup_mlflow
    from candlecast.tracking.aliases import rollback

    loaded, paths = _context(root, params)

    def run() -> dict[str, Any]:
        client = setup_mlflow(loaded, paths)
        try:
            done = rollback(client, loaded.ensemble.registered_model, reason)
        except MlflowException as err:
            raise ValueError(str(err)) from err
        _notifier(loaded).notify("rollback", f"champion rolled back to v{done['champion']} "
                                 f"(from v{done['rolled_back']}): {reason}", **done)
        return done

    _done(_guard(run))


@ops_app.command("history")
def history_command(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """The champion alias history (promotions and rollbacks, newest last)."""
    from candlecast.ops.context import setup_mlflow
    from candlecast.tracking.aliases import champion_history

    loaded, paths = _context(root, params)
    _done(_guard(lambda: champion_history(setup_mlflow(loaded, paths),
                                          loaded.ensemble.registered_model)))


@ops_app.command("check-service")
def check_service_command(
    url: Annotated[str | None, typer.Option("--url", help="Signal service URL.")] = None,
    root: RootOption = Path(), params: ParamsOption = None,
) -> None:
    """Probe the signal service; alert (webhook) when it is not ready."""
    from candlecast.monitoring.alerts import check_service

    loaded, _ = _context(root, params)
    status = check_service(url or loaded.trade.service_url, _notifier(loaded))
    _done(status)
    if not status["ready"]:
        raise typer.Exit(code=1)
