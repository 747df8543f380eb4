"""`candlecast portfolio`: the opt-in portfolio path, in its own workspace.

The workspace (``portfolio.workspace``, default ``portfolio/``) is a project root of its own:
``params.yaml`` there is the project's ``params.yaml`` with ``profiles/portfolio.yaml`` merged
over it (written by :func:`prepare_workspace`, the lineage of every output), the Feast
repository, the params profiles and the Great Expectations context are copies of the
project's, the bundled sample is linked, and MLflow is the project's store (so one UI shows
both paths). The pipeline's own
stage functions then run there (:func:`candlecast.pipeline.runner.portfolio_plan`): the
default pipeline's outputs and its DVC state are never touched.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from candlecast.common.uris import absolute_sqlite_uri
from candlecast.config import Params, check_deferred, deep_merge, load_params, parse_params
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import portfolio_plan, run_stage

log = logging.getLogger(__name__)
PROFILE = Path("profiles") / "portfolio.yaml"


def workspace_raw(root: Path, profile: Path | None = None) -> dict[str, Any]:
    """``params.yaml`` with the portfolio profile merged over it and MLflow pointed at the
    project's store (absolute: the workspace is another root)."""
    base = yaml.safe_load((root / "params.yaml").read_text()) or {}
    overlay = yaml.safe_load((profile or root / PROFILE).read_text()) or {}
    raw = deep_merge(base, overlay)
    section = dict(raw.get("mlflow", {}))
    section["tracking_uri"] = absolute_sqlite_uri(section.get("tracking_uri",
                                                              "sqlite:///mlruns.db"), root)
    artifacts = Path(section.get("artifact_root", "mlartifacts"))
    section["artifact_root"] = str(artifacts if artifacts.is_absolute()
                                   else (root / artifacts).resolve())
    raw["mlflow"] = section
    return raw


def prepare_workspace(root: Path, profile: Path | None = None) -> tuple[Params, Paths]:
    """Write the workspace (see the module docstring) and return its params and paths."""
    root = root.resolve()
    raw = workspace_raw(root, profile)
    params = parse_params(raw)  # validated before anything is written
    ws = (root / params.portfolio.workspace).resolve()
    if ws == root:
        raise ValueError("portfolio.workspace must not be the project root")
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "params.yaml").write_text(
        "# written by `candlecast portfolio`: params.yaml + profiles/portfolio.yaml\n"
        + yaml.safe_dump(raw, sort_keys=False))
    repo = ws / "feature_repo"
    repo.mkdir(exist_ok=True)
    for source in (root / "feature_repo").glob("*"):
        if source.suffix in (".yaml", ".py"):  # feature_store*.yaml and definitions.py
            shutil.copy(source, repo / source.name)
    # $CANDLECAST_PROFILE (the services switch) is a path relative to the params file: the
    # workspace's params resolve it against the workspace, so it gets the profiles too
    shutil.copytree(root / "profiles", ws / "profiles", dirs_exist_ok=True)
    shutil.copytree(root / "expectations", ws / "expectations", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("uncommitted"))
    sample = ws / "data" / "sample"
    if not sample.exists():
        sample.parent.mkdir(parents=True, exist_ok=True)
        sample.symlink_to((root / "data" / "sample").resolve(), target_is_directory=True)
    (ws / ".gitignore").write_text(
        "# the portfolio workspace: everything is rebuilt by `candlecast portfolio`; the small\n"
        "# result files are committed like the default pipeline's metrics/\n*\n!.gitignore\n"
        "!metrics/\n!metrics/**\n!reports/\n!reports/portfolio/\n"
        "!reports/portfolio/summary.json\n!reports/portfolio/ranking.json\n"
        "!reports/portfolio/*.png\n")
    return load_params(ws / "params.yaml"), Paths(ws)


def run_portfolio_path(root: Path, profile: Path | None = None, *, start: str | None = None,
                       only: str | None = None,
                       progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepare the workspace and run the portfolio stages in order (from ``start``, or just
    ``only``); returns each stage's summary and its wall time."""
    params, paths = prepare_workspace(root, profile)
    check_deferred(params)
    plan = portfolio_plan(params)
    names = [f"{s}@{a}" if a else s for s, a in plan]
    if only is not None:
        if only not in names:
            raise ValueError(f"unknown portfolio stage {only!r}; expected one of {names}")
        plan = [plan[names.index(only)]]
    elif start is not None:
        if start not in names:
            raise ValueError(f"unknown portfolio stage {start!r}; expected one of {names}")
        plan = plan[names.index(start):]
    results: dict[str, Any] = {"workspace": str(paths.root), "seconds": {}}
    began = time.perf_counter()
    for stage, arg in plan:
        name = f"{stage}@{arg}" if arg else stage
        progress(f"portfolio: {name} ...")
        t0 = time.perf_counter()
        results[name] = run_stage(stage, params, paths, arg)
        results["seconds"][name] = round(time.perf_counter() - t0, 1)
        progress(f"portfolio: {name} done in {results['seconds'][name]:.1f} s")
    results["seconds"]["total"] = round(time.perf_counter() - began, 1)
    return results
