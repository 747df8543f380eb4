"""LightGBM next-candle direction classifier, early-stopped on a chronological validation part."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LightGBMFit:
    model: lgb.LGBMClassifier
    best_iteration: int
    eval_log_loss: list[float]


def fit_lightgbm_direction(
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_val: pd.DataFrame,
    y_val: pd.Series,
    *,
    params: dict[str, Any],
    early_stopping_rounds: int,
    seed: int,
    on_iteration: Callable[[int, float], None] | None = None,
) -> LightGBMFit:
    """Fit on train, stop early on validation log loss. Deterministic for a given seed."""
    for name, y in (("train", y_train), ("validation", y_val)):
        labels = set(np.unique(y.to_numpy()))
        if not labels <= {0.0, 1.0} or len(labels) < 2:
            raise ValueError(
                f"{name} labels must contain both classes 0 and 1, got {sorted(labels)}"
            )
    model = lgb.LGBMClassifier(
        objective="binary",
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
        **params,
    )
    callbacks: list[Callable] = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
    if on_iteration is not None:

        def _report(env: lgb.callback.CallbackEnv) -> None:
            for entry in env.evaluation_result_list or []:
                if entry[1] == "binary_logloss":
                    on_iteration(env.iteration + 1, float(entry[2]))

        callbacks.append(_report)
    model.fit(
        X_train,
        y_train.astype(int),
        eval_set=[(X_val, y_val.astype(int))],
        eval_metric="binary_logloss",
        callbacks=callbacks,
    )
    history = model.evals_result_["valid_0"]["binary_logloss"]
    return LightGBMFit(
        model, int(model.best_iteration_ or len(history)), [float(v) for v in history]
    )
