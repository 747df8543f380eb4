"""Dispatch a stage name to its stage function (imported lazily: stages have heavy imports)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from candlecast.config import Params
from candlecast.pipeline.paths import Paths

STAGES: tuple[str, ...] = (
    "ingest", "validate", "features", "feature-store", "train", "evaluate", "backtest"
)

_FUNCTIONS = {
    "ingest": "candlecast.pipeline.ingest_stage:run_ingest",
    "validate": "candlecast.pipeline.validate_stage:run_validate",
    "features": "candlecast.pipeline.features_stage:run_features",
    "feature-store": "candlecast.pipeline.feature_store_stage:run_feature_store",
    "train": "candlecast.pipeline.train_stage:run_train",
    "evaluate": "candlecast.pipeline.evaluate_stage:run_evaluate",
    "backtest": "candlecast.pipeline.backtest_stage:run_backtest",
}


def stage_function(stage: str) -> Callable[[Params, Paths], dict[str, Any]]:
    if stage not in _FUNCTIONS:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")
    module, name = _FUNCTIONS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def run_stage(stage: str, params: Params, paths: Paths) -> dict[str, Any]:
    return stage_function(stage)(params, paths)
