"""The `candlecast` command line: one subcommand per pipeline stage, plus helpers.

Every stage subcommand loads ``params.yaml`` once, runs the same stage function that the Prefect
flow and ``dvc repro`` run, and on bad input prints ONE line ``error: ...`` and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from candlecast.config import check_deferred, load_params
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import (
    ALL_STAGES,
    PARAMETRIC_STAGES,
    ZOO_STAGES,
    check_stage_argument,
    decision_plan,
    run_stage,
    zoo_plan,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

RootOption = Annotated[Path, typer.Option("--root", help="Project root (holds params.yaml).")]
ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="Params file (default: <root>/params.yaml).")
]


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)


def _run(stage: str, root: Path, params_file: Path | None, arg: str | None = None) -> None:
    _setup_logging()
    try:
        params = load_params(params_file or root / "params.yaml")
        check_stage_argument(stage, arg, params)
        if stage == ZOO_STAGES[0]:
            check_deferred(params)
        result = run_stage(stage, params, Paths(root.resolve()), arg)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    typer.echo(json.dumps(result, indent=2, default=str))


def _make_command(stage: str) -> Callable[..., None]:
    def command(root: RootOption = Path(), params: ParamsOption = None) -> None:
        _run(stage, root, params)

    command.__doc__ = f"Run the `{stage}` stage of the pipeline (see dvc.yaml)."
    return command


for _stage in ALL_STAGES:
    if _stage not in PARAMETRIC_STAGES:
        app.command(name=_stage)(_make_command(_stage))


@app.command("train-model")
def train_model(
    model: Annotated[str, typer.Argument(help="A model of models.run, e.g. lightgbm.")],
    root: RootOption = Path(),
    params: ParamsOption = None,
) -> None:
    """Train and score one zoo model walk-forward (DVC stage `train-model@<model>`)."""
    _run("train-model", root, params, model)


@app.command("zoo")
def zoo(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """Run the model zoo up to a registered model: regime, every model of models.run, ensemble,
    compare, then the policy, its backtest and the registration (the champion rule)."""
    _setup_logging()
    results = {}
    try:
        loaded = load_params(params or root / "params.yaml")
        check_deferred(loaded)
        for stage, arg in zoo_plan(loaded) + decision_plan(loaded):
            results[f"{stage}@{arg}" if arg else stage] = run_stage(
                stage, loaded, Paths(root.resolve()), arg
            )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    typer.echo(json.dumps(results, indent=2, default=str))


@app.command("portfolio")
def portfolio(
    root: RootOption = Path(),
    profile: Annotated[Path | None, typer.Option(
        "--profile", help="Params profile merged over params.yaml (default: "
        "profiles/portfolio.yaml).")] = None,
    start: Annotated[str | None, typer.Option(
        "--from", help="Start at this stage (e.g. portfolio-backtest); earlier outputs are "
        "reused.")] = None,
    only: Annotated[str | None, typer.Option("--only", help="Run only this stage.")] = None,
) -> None:
    """The portfolio path: the five bundled coins as ONE book. In its own workspace
    (portfolio/): ingest, validate, features, cross-section, Feast, the pooled zoo on the
    return relative to the basket, the book's construction chosen walk-forward, its backtest
    beside the equal-weight basket and BTC buy-and-hold, the registered model. Then
    `candlecast report`. The default pipeline (make run) is not touched (docs/portfolio.md)."""
    from candlecast.pipeline.portfolio_run import run_portfolio_path

    _setup_logging()
    try:
        results = run_portfolio_path(root.resolve(), profile, start=start, only=only,
                                     progress=lambda line: typer.echo(line, err=True))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    typer.echo(json.dumps({"workspace": results["workspace"], "seconds": results["seconds"]},
                          indent=2))


def _mount_trade() -> None:
    from candlecast.trading.cli import trade_app

    app.add_typer(trade_app, name="trade", help="Paper (default) or live trading on new candles.")


_mount_trade()


def _mount_ops() -> None:
    from candlecast.ops.cli import ops_app

    app.add_typer(ops_app, name="ops", help="Drift checks, retraining, promotion, rollback.")


_mount_ops()


def _mount_console() -> None:
    from candlecast.console.cli import dashboard_command, telegram_command

    app.command("dashboard")(dashboard_command)
    app.command("telegram")(telegram_command)


_mount_console()


@app.command(
    "repro", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def repro(ctx: typer.Context, root: RootOption = Path()) -> None:
    """`dvc repro [ARGS]` with ONE local Prefect API server for every stage's flow (instead of
    a temporary server per stage); uses $PREFECT_API_URL when it is set. Without ARGS and with
    every stage up to date (`dvc status`), it says so and starts no server."""
    from candlecast.pipeline.prefect_server import dvc_up_to_date, run_with_prefect_server

    dvc = Path(sys.executable).with_name("dvc")
    if not ctx.args and dvc_up_to_date(str(dvc), root.resolve()):
        typer.echo("Data and pipelines are up to date.")
        raise typer.Exit(0)
    try:
        code = run_with_prefect_server([str(dvc), "repro", *ctx.args], root.resolve())
    except RuntimeError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command("serve")
def serve(
    root: RootOption = Path(),
    params: ParamsOption = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 3000,
) -> None:
    """`bentoml serve` the signal service following the MLflow registry (`serving.model_uri`,
    e.g. the `champion` alias), so `POST /reload` picks up a newly promoted champion. (A bento
    built by `package` serves the model it was built with.)"""
    import os

    from candlecast.pipeline.package_stage import serving_config
    from candlecast.serving.config import CONFIG_ENV, write_serving_config

    root = root.resolve()
    try:
        loaded = load_params(params or root / "params.yaml")
    except ValueError as exc:
        _fail(exc)
    config_file = root / "data" / "serving" / "serving_config.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    write_serving_config(serving_config(loaded, Paths(root)), config_file)
    bentoml = Path(sys.executable).with_name("bentoml")
    env = {**os.environ, CONFIG_ENV: str(config_file), "BENTOML_DO_NOT_TRACK": "True"}
    args = [str(bentoml), "serve", "service:SignalService", "--working-dir", str(root / "bentos"),
            "--host", host, "--port", str(port)]
    os.execve(str(bentoml), args, env)  # noqa: S606 - replaces this process, no shell


@app.command("report")
def report(
    root: RootOption = Path(),
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown tables (the "
                                           "README's) instead of rich tables.")] = False,
    portfolio: Annotated[bool | None, typer.Option(
        "--portfolio/--no-portfolio", help="Only the portfolio path's report (or none of it); "
        "default: both, the portfolio's when `candlecast portfolio` has run.")] = None,
) -> None:
    """The backtest's results as tables: the walk-forward policy beside buy-and-hold and the
    rule baselines (the book and each series), per fold, DSR and PBO, the targets checked;
    then the portfolio (the five coins as one book) beside the equal-weight basket and BTC
    buy-and-hold, per coin, per fold with the ranking's rank IC and ICIR."""
    from candlecast.pipeline import portfolio_report
    from candlecast.pipeline.report import load_summary, render

    root = root.resolve()
    texts = []
    policy_summary = root / "reports" / "backtest" / "summary.json"
    book = portfolio_report.summary_path(root)
    try:
        if portfolio is False or (portfolio is None and (policy_summary.exists()
                                                         or not book.exists())):
            texts.append(render(load_summary(root), markdown=markdown))
        if portfolio is True or (portfolio is None and book.exists()):
            texts.append(portfolio_report.render(portfolio_report.load_summary(root),
                                                 markdown=markdown))
    except FileNotFoundError as exc:
        _fail(exc)
    for text in texts:
        if text is not None:
            typer.echo(text)


@app.command("check-params")
def check_params(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """Validate params.yaml and print the resolved parameters."""
    try:
        loaded = load_params(params or root / "params.yaml")
        check_deferred(loaded)
    except ValueError as exc:
        _fail(exc)
    typer.echo(json.dumps(loaded.model_dump(mode="json", by_alias=True), indent=2))


@app.command("data-docs")
def data_docs(
    root: RootOption = Path(),
    out: Annotated[Path | None, typer.Option("--out", help="Folder to render into.")] = None,
) -> None:
    """Render Great Expectations Data Docs (the suite and stored validation results)."""
    from candlecast.validation import build_data_docs

    index = build_data_docs(root / "expectations", out)
    typer.echo(str(index))


def run_stage_command(flows: Mapping[str, Callable[..., Any]], argv: Sequence[str]) -> int:
    """Entry point of ``python flows/pipeline.py <stage> [model]``: run one stage's Prefect flow.

    Params (for the zoo stages also the stage's argument; for the first zoo stage every
    deferred section) are validated before Prefect starts, so bad input fails fast with one
    line. The other zoo stages validate the deferred section they use first thing.
    """
    stage = argv[0] if argv else ""
    wanted = 2 if stage in PARAMETRIC_STAGES else 1
    if stage not in flows or len(argv) != wanted:
        print(
            f"usage: flows/pipeline.py {{{'|'.join(flows)}}} "
            f"(train-model takes a model name: train-model lightgbm)",
            file=sys.stderr,
        )
        return 2
    arg = argv[1] if wanted == 2 else None
    root = Path.cwd()
    try:
        params = load_params(root / "params.yaml")
        if stage in ZOO_STAGES:
            check_stage_argument(stage, arg, params)
        if stage == ZOO_STAGES[0]:  # the first zoo stage checks every deferred section up front
            check_deferred(params)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kwargs = {"root": str(root), "params_file": str(root / "params.yaml")}
    if arg is not None:
        kwargs["model"] = arg
    try:
        flows[stage](**kwargs)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {stage} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app()
