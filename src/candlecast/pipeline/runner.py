"""Dispatch a stage name to its stage function (imported lazily: stages have heavy imports).

``STAGES`` is the hold-out pipeline (ingest .. evaluate, backtest); ``ZOO_STAGES`` the
walk-forward model zoo. ``train-model`` is parametric: it runs one model of ``models.run`` by
name (DVC runs it as ``train-model@<name>`` via ``foreach``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from candlecast.config import Params
from candlecast.pipeline.paths import Paths

ZOO_STAGES: tuple[str, ...] = ("regime", "train-model", "ensemble", "compare")
STAGES: tuple[str, ...] = (
    "ingest", "validate", "features", "feature-store", "train", "evaluate", "policy",
    "backtest", "register", "package"
)
#: the stages after the zoo (they read the ensemble's out-of-sample predictions / the champion)
AFTER_ZOO: tuple[str, ...] = ("policy", "backtest", "register", "package")
ALL_STAGES: tuple[str, ...] = STAGES + ZOO_STAGES
#: the portfolio path's own stages (``candlecast portfolio`` runs them in its workspace)
PORTFOLIO_STAGES: tuple[str, ...] = ("cross-section", "portfolio", "portfolio-backtest",
                                     "portfolio-register")
#: Stages that take one argument (the model name).
PARAMETRIC_STAGES: frozenset[str] = frozenset({"train-model"})

_FUNCTIONS = {
    "ingest": "candlecast.pipeline.ingest_stage:run_ingest",
    "validate": "candlecast.pipeline.validate_stage:run_validate",
    "features": "candlecast.pipeline.features_stage:run_features",
    "feature-store": "candlecast.pipeline.feature_store_stage:run_feature_store",
    "train": "candlecast.pipeline.train_stage:run_train",
    "evaluate": "candlecast.pipeline.evaluate_stage:run_evaluate",
    "regime": "candlecast.pipeline.regime_stage:run_regime",
    "train-model": "candlecast.pipeline.zoo_stage:run_train_model",
    "ensemble": "candlecast.pipeline.ensemble_stage:run_ensemble",
    "compare": "candlecast.pipeline.compare_stage:run_compare",
    "policy": "candlecast.pipeline.policy_stage:run_policy",
    "backtest": "candlecast.pipeline.backtest_stage:run_backtest",
    "register": "candlecast.pipeline.register_stage:run_register",
    "package": "candlecast.pipeline.package_stage:run_package",
    "cross-section": "candlecast.pipeline.cross_section_stage:run_cross_section",
    "portfolio": "candlecast.pipeline.portfolio_stage:run_portfolio_stage",
    "portfolio-backtest": "candlecast.pipeline.portfolio_backtest_stage:run_portfolio_backtest",
    "portfolio-register": "candlecast.pipeline.portfolio_register_stage:run_portfolio_register",
}


def stage_function(stage: str) -> Callable[..., dict[str, Any]]:
    if stage not in _FUNCTIONS:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(ALL_STAGES)}")
    module, name = _FUNCTIONS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def check_stage_argument(stage: str, arg: str | None, params: Params) -> None:
    """A parametric stage needs a model name from ``models.run``; the others take none."""
    if stage not in _FUNCTIONS:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(ALL_STAGES)}")
    if stage in PARAMETRIC_STAGES:
        if arg is None:
            raise ValueError(
                f"stage {stage!r} needs a model name: one of {list(params.models.run)}"
            )
        if arg not in params.models.run:
            raise ValueError(
                f"stage {stage!r}: model {arg!r} is not in models.run {list(params.models.run)}"
            )
    elif arg is not None:
        raise ValueError(f"stage {stage!r} takes no argument, got {arg!r}")


def run_stage(stage: str, params: Params, paths: Paths, arg: str | None = None) -> dict[str, Any]:
    check_stage_argument(stage, arg, params)
    function = stage_function(stage)
    if stage in PARAMETRIC_STAGES:
        return function(params, paths, arg)
    return function(params, paths)


def zoo_plan(params: Params) -> list[tuple[str, str | None]]:
    """The zoo stages in run order, one ``train-model`` per model of ``models.run``."""
    plan: list[tuple[str, str | None]] = [("regime", None)]
    plan += [("train-model", name) for name in params.models.run]
    plan += [("ensemble", None), ("compare", None)]
    return plan


def decision_plan(params: Params) -> list[tuple[str, str | None]]:
    """After the zoo: the policy chosen walk-forward, its backtest, the registered model."""
    return [("policy", None), ("backtest", None), ("register", None)]


def portfolio_plan(params: Params) -> list[tuple[str, str | None]]:
    """The portfolio path in run order: the data stages on the whole universe, the
    cross-section, Feast, the zoo on the relative target, then the book chosen walk-forward,
    its backtest beside the baselines and its registration."""
    head = [(stage, None) for stage in ("ingest", "validate", "features", "cross-section",
                                        "feature-store")]
    book = [(stage, None) for stage in PORTFOLIO_STAGES[1:]]
    return head + zoo_plan(params) + book


def pipeline_plan(params: Params) -> list[tuple[str, str | None]]:
    """Every stage in ``dvc repro`` order."""
    before = [(stage, None) for stage in STAGES if stage not in AFTER_ZOO]
    return before + zoo_plan(params) + [(stage, None) for stage in AFTER_ZOO]
