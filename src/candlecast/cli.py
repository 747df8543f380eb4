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

from candlecast.config import load_params
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import STAGES, run_stage

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


def _run(stage: str, root: Path, params_file: Path | None) -> None:
    _setup_logging()
    try:
        params = load_params(params_file or root / "params.yaml")
        result = run_stage(stage, params, Paths(root.resolve()))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    typer.echo(json.dumps(result, indent=2, default=str))


def _make_command(stage: str) -> Callable[..., None]:
    def command(root: RootOption = Path(), params: ParamsOption = None) -> None:
        _run(stage, root, params)

    command.__doc__ = f"Run the `{stage}` stage of the pipeline (see dvc.yaml)."
    return command


for _stage in STAGES:
    app.command(name=_stage)(_make_command(_stage))


def _mount_trade() -> None:
    from candlecast.trading.cli import trade_app

    app.add_typer(trade_app, name="trade", help="Paper (default) or live trading on new candles.")


_mount_trade()


@app.command("check-params")
def check_params(root: RootOption = Path(), params: ParamsOption = None) -> None:
    """Validate params.yaml and print the resolved parameters."""
    try:
        loaded = load_params(params or root / "params.yaml")
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
    """Entry point of ``python flows/pipeline.py <stage>``: run one stage's Prefect flow.

    Params are validated before Prefect starts, so a bad params file fails fast with one line.
    """
    if len(argv) != 1 or argv[0] not in flows:
        print(f"usage: flows/pipeline.py {{{'|'.join(flows)}}}", file=sys.stderr)
        return 2
    root = Path.cwd()
    try:
        load_params(root / "params.yaml")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        flows[argv[0]](root=str(root), params_file=str(root / "params.yaml"))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {argv[0]} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app()
