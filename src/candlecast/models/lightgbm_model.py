"""LightGBM as a ``DirectionModel``: early stopping on a purged chronological inner split.

``fit(X, y)`` cuts the training rows on time (``chronological_validation_split``): the latest
``val_fraction`` of the distinct timestamps is the validation block, and inner-training rows
whose label reaches into it (``horizon`` steps) are purged. Boosting stops when the validation
log loss has not improved for ``early_stopping_rounds`` trees (``fit_lightgbm_direction``).
With ``refit_full`` the model is then refitted on ALL training rows with the number of trees
found, so the most recent data (the validation block, closest to the test window) is not
wasted. Passing ``X_val``/``y_val`` skips the inner split and the refit.

The module imports LightGBM lazily, so the configuration is cheap to import (``config.py``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from candlecast.evaluation.splits import chronological_validation_split
from candlecast.models.base import NotFittedError, check_fit_inputs, require_columns

#: The LGBMClassifier hyperparameters of :class:`LightGBMModelConfig` (what Optuna tunes from).
BOOSTER_FIELDS: tuple[str, ...] = (
    "n_estimators",
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "subsample",
    "subsample_freq",
    "colsample_bytree",
    "reg_lambda",
)
_CONFIG_FILE = "lightgbm_model.json"
_BOOSTER_FILE = "booster.txt"


class LightGBMHyperparams(BaseModel):
    """The booster's hyperparameters and early stopping, shared by the hold-out ``train`` stage
    (``train.lightgbm``) and the zoo's LightGBM (``models.lightgbm``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # (typed, bounded Field declarations like every config: any two runs of them are alike in
    # shape, e.g. ChronosConfig's architecture fields)
    n_estimators: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.03, gt=0, le=1)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=200, ge=1)
    subsample: float = Field(default=0.8, gt=0, le=1)
    subsample_freq: int = Field(default=1, ge=0)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    early_stopping_rounds: int = Field(default=50, ge=1)


class LightGBMModelConfig(LightGBMHyperparams):
    """Hyperparameters, the inner split and the data layout of the LightGBM direction model."""

    #: share of the training part's distinct timestamps used for early stopping (the latest).
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    #: label horizon in time steps: inner-training rows within it of the validation block are
    #: purged. The model zoo sets it to at least the label's horizon.
    horizon: int = Field(default=1, ge=1)
    #: refit on all training rows with the early-stopped number of trees.
    refit_full: bool = True
    #: feature columns; None = every numeric column except the series and timestamp columns.
    feature_columns: tuple[str, ...] | None = None
    series_column: str | None = "series_id"
    timestamp_column: str = "event_timestamp"
    seed: int = 42

    def booster_params(self) -> dict[str, Any]:
        """The LGBMClassifier keyword arguments (without seed and threading)."""
        return {name: getattr(self, name) for name in BOOSTER_FIELDS}


def _classifier(config: LightGBMModelConfig, n_estimators: int) -> Any:
    import lightgbm as lgb

    return lgb.LGBMClassifier(
        objective="binary",
        random_state=config.seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
        **{**config.booster_params(), "n_estimators": n_estimators},
    )


def select_feature_columns(
    X: pd.DataFrame, configured: tuple[str, ...] | None, skip: tuple[str | None, ...], who: str
) -> tuple[str, ...]:
    """The configured feature columns (checked), or every numeric column not in ``skip``."""
    if configured is not None:
        require_columns(X, configured, who)
        return configured
    names = tuple(
        str(c)
        for c in X.columns
        if c not in skip and (pd.api.types.is_numeric_dtype(X[c]) or X[c].dtype == bool)
    )
    if not names:
        raise ValueError(f"{who} found no numeric feature columns in X")
    return names


class LightGBMDirectionModel:
    """Gradient-boosted trees on the feature columns (family ``gbm``)."""

    family = "gbm"

    def __init__(self, config: LightGBMModelConfig | None = None, *, name: str = "lightgbm"):
        self.config = config or LightGBMModelConfig()
        self.name = name
        #: optional ``(iteration, validation log loss)`` hook, e.g. for Optuna pruning.
        self.on_iteration: Callable[[int, float], None] | None = None
        self.features_: tuple[str, ...] | None = None
        self.booster_: Any = None
        self.num_iteration_: int | None = None
        self.best_iteration_: int | None = None
        self.val_log_loss_: float | None = None
        self.n_inner_train_: int | None = None
        self.n_val_: int | None = None

    def _features(self, X: pd.DataFrame) -> tuple[str, ...]:
        cfg = self.config
        skip = (cfg.series_column, cfg.timestamp_column)
        return select_feature_columns(X, cfg.feature_columns, skip, f"model {self.name!r}")

    def inner_split(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Row positions of the inner-training and validation parts of ``X`` (purged)."""
        cfg = self.config
        require_columns(X, [cfg.timestamp_column], f"model {self.name!r} (inner time split)")
        return chronological_validation_split(
            X[cfg.timestamp_column], cfg.val_fraction, horizon=cfg.horizon
        )

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_val: pd.DataFrame | None = None,
        y_val: pd.Series | None = None,
    ) -> Self:
        from candlecast.models.lightgbm_fit import fit_lightgbm_direction

        cfg = self.config
        labels = pd.Series(check_fit_inputs(X, y), index=X.index)
        features = self._features(X)
        if X_val is None:
            inner, val = self.inner_split(X)
            X_in, y_in = X.iloc[inner], labels.iloc[inner]
            X_va, y_va = X.iloc[val], labels.iloc[val]
        else:
            if y_val is None:
                raise ValueError("X_val was given without y_val")
            X_in, y_in = X, labels
            X_va = X_val
            y_va = pd.Series(check_fit_inputs(X_val, y_val, "validation"), index=X_val.index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LightGBM's eval_set deprecation notice
            fit = fit_lightgbm_direction(
                X_in[list(features)], y_in, X_va[list(features)], y_va,
                params=cfg.booster_params(), early_stopping_rounds=cfg.early_stopping_rounds,
                seed=cfg.seed, on_iteration=self.on_iteration,
            )
            self.best_iteration_ = fit.best_iteration
            self.val_log_loss_ = float(fit.eval_log_loss[fit.best_iteration - 1])
            self.n_inner_train_, self.n_val_ = len(X_in), len(X_va)
            if cfg.refit_full and X_val is None:
                model = _classifier(cfg, fit.best_iteration)
                model.fit(X[list(features)], labels.astype(int))
                self.num_iteration_ = None
            else:
                model = fit.model
                self.num_iteration_ = fit.best_iteration
        self.features_ = features
        self.booster_ = model.booster_
        return self

    def predict_proba_up(self, X: pd.DataFrame) -> np.ndarray:
        if self.booster_ is None or self.features_ is None:
            raise NotFittedError(f"model {self.name!r} must be fit before predicting")
        require_columns(X, self.features_, f"model {self.name!r}")
        values = X.loc[:, list(self.features_)].to_numpy(dtype=np.float64)
        return np.asarray(
            self.booster_.predict(values, num_iteration=self.num_iteration_, num_threads=1), float
        )

    def fit_info(self) -> dict[str, float]:
        """Numbers worth logging about the last fit."""
        if self.best_iteration_ is None:
            raise NotFittedError(f"model {self.name!r} must be fit first")
        return {
            "best_iteration": float(self.best_iteration_),
            "val_log_loss": float(self.val_log_loss_ or np.nan),
            "n_inner_train": float(self.n_inner_train_ or 0),
            "n_val": float(self.n_val_ or 0),
        }

    def feature_importance(self) -> pd.DataFrame:
        """Total gain per feature of the fitted booster, largest first."""
        if self.booster_ is None or self.features_ is None:
            raise NotFittedError(f"model {self.name!r} must be fit first")
        gain = self.booster_.feature_importance(importance_type="gain")
        return (
            pd.DataFrame({"feature": list(self.features_), "gain": gain})
            .sort_values("gain", ascending=False, kind="stable")
            .reset_index(drop=True)
        )

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        """Write the booster (LightGBM text format) and the config to ``directory``."""
        if self.booster_ is None or self.features_ is None:
            raise NotFittedError(f"model {self.name!r} must be fit before saving")
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(target / _BOOSTER_FILE), num_iteration=self.num_iteration_)
        payload = {
            "name": self.name,
            "config": self.config.model_dump(mode="json"),
            "features": list(self.features_),
            "best_iteration": self.best_iteration_,
        }
        (target / _CONFIG_FILE).write_text(json.dumps(payload, indent=2))
        return target

    @classmethod
    def load(cls, directory: str | Path) -> LightGBMDirectionModel:
        import lightgbm as lgb

        source = Path(directory)
        payload = json.loads((source / _CONFIG_FILE).read_text())
        model = cls(LightGBMModelConfig(**payload["config"]), name=payload["name"])
        model.booster_ = lgb.Booster(model_file=str(source / _BOOSTER_FILE))
        model.features_ = tuple(payload["features"])
        model.best_iteration_ = payload["best_iteration"]
        return model
