"""Optuna tuning of the LightGBM direction model inside ONE fold's training part.

The objective never sees a test row: the fold's training rows are cut on time into an
inner-training part and a later validation block (purged by the label horizon, the same
``chronological_validation_split`` the final model uses), each trial fits on the inner part
(optionally only its latest ``max_train_rows`` rows, to keep trials cheap) and is scored by its
early-stopped validation log loss. A TPE sampler (seeded) proposes parameters; a median pruner
stops trials whose validation curve is worse than the median of earlier trials at the same
boosting iteration. Trials run sequentially, LightGBM is deterministic, so the same data and
seed give the same study.

The study lives in SQLite when ``storage`` is given (an existing study of the same name is
replaced, so a rerun starts fresh); :class:`TuningResult` carries every trial for logging.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from candlecast.models.base import check_fit_inputs
from candlecast.models.lightgbm_model import LightGBMDirectionModel, LightGBMModelConfig


class TuningConfig(BaseModel):
    """Budget, sampler, pruner and search space of the LightGBM tuning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    n_trials: int = Field(default=8, ge=1, le=10_000)
    #: wall-clock cap per study (None: none). A timeout makes results machine-dependent.
    timeout_s: float | None = Field(default=None, gt=0)
    seed: int = 42
    #: random trials before TPE starts modelling (also the pruner's startup trials).
    n_startup_trials: int = Field(default=4, ge=0)
    pruning: bool = True
    #: boosting iterations before a trial may be pruned.
    pruner_warmup_steps: int = Field(default=30, ge=0)
    #: the study's RDB storage URL (e.g. ``postgresql+psycopg://user@host:5432/optuna``, shared
    #: by every worker); None: a SQLite file in the model's output folder
    storage: str | None = None
    #: study names are ``<study_prefix>-h<horizon>-fold<k>``: one namespace per project on a
    #: shared storage
    study_prefix: str = Field(default="lightgbm", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: trials of one study run at once in this many threads, all reading and writing the one
    #: study in its storage (1: sequential and deterministic; more: faster, but TPE then sees
    #: trials in completion order, so the study depends on timing)
    n_jobs: int = Field(default=1, ge=1, le=64)
    #: report the validation loss to Optuna every N iterations (each report is a DB write).
    report_every: int = Field(default=10, ge=1)
    #: trials train on at most this many of the latest inner-training rows (None: all).
    max_train_rows: int | None = Field(default=20_000, ge=50)
    # search space (low, high), log-uniform where marked
    num_leaves: tuple[int, int] = (7, 63)  # log
    learning_rate: tuple[float, float] = (0.01, 0.1)  # log
    min_child_samples: tuple[int, int] = (50, 1000)  # log
    colsample_bytree: tuple[float, float] = (0.4, 1.0)
    subsample: tuple[float, float] = (0.5, 1.0)
    reg_lambda: tuple[float, float] = (1e-3, 10.0)  # log

    @model_validator(mode="after")
    def _ranges(self) -> TuningConfig:
        for name in ("num_leaves", "learning_rate", "min_child_samples", "colsample_bytree",
                     "subsample", "reg_lambda"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(
                    f"tuning range {name} must satisfy 0 < low <= high, got {(low, high)}"
                )
        if self.num_leaves[0] < 2:
            raise ValueError("tuning range num_leaves must start at 2 or more")
        for name in ("colsample_bytree", "subsample"):
            if getattr(self, name)[1] > 1:
                raise ValueError(f"tuning range {name} must lie in (0, 1]")
        return self


def suggest_params(trial: Any, config: TuningConfig) -> dict[str, Any]:
    """One trial's LightGBM parameters from the search space."""
    return {
        "num_leaves": trial.suggest_int("num_leaves", *config.num_leaves, log=True),
        "learning_rate": trial.suggest_float("learning_rate", *config.learning_rate, log=True),
        "min_child_samples": trial.suggest_int(
            "min_child_samples", *config.min_child_samples, log=True
        ),
        "colsample_bytree": trial.suggest_float("colsample_bytree", *config.colsample_bytree),
        "subsample": trial.suggest_float("subsample", *config.subsample),
        "reg_lambda": trial.suggest_float("reg_lambda", *config.reg_lambda, log=True),
    }


@dataclass(frozen=True)
class TuningResult:
    """The best parameters and every trial (number, state, value, params, timings)."""

    best_params: dict[str, Any]
    best_value: float
    trials: pd.DataFrame
    study_name: str
    storage: str | None
    #: time span of the rows the trials trained and validated on (proof of "training only").
    data_end: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_complete(self) -> int:
        return int((self.trials["state"] == "COMPLETE").sum())

    @property
    def n_pruned(self) -> int:
        return int((self.trials["state"] == "PRUNED").sum())


def rdb_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url``; SQLite waits up to a minute for a lock (several task
    runner workers may write their folds' studies into one file) instead of failing at once."""
    import time

    import optuna
    from sqlalchemy.exc import DBAPIError

    engine: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {
        "pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except DBAPIError:  # another worker was creating the schema at the same moment
            # (SQLite: IntegrityError; PostgreSQL: UniqueViolation / DuplicateTable): retry
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _fresh_study(url: str | None, study_name: str, sampler: Any, pruner: Any) -> Any:
    import optuna

    storage = rdb_storage(url) if url is not None else None
    if storage is not None:
        with contextlib.suppress(KeyError):  # no such study yet
            optuna.delete_study(study_name=study_name, storage=storage)
    return optuna.create_study(
        direction="minimize", sampler=sampler, pruner=pruner, storage=storage,
        study_name=study_name,
    )


def tune_lightgbm(
    X: pd.DataFrame,
    y: pd.Series,
    base: LightGBMModelConfig,
    config: TuningConfig,
    *,
    storage: str | None = None,
    study_name: str = "lightgbm",
) -> TuningResult:
    """Tune ``base``'s booster parameters on ``X``/``y`` (a fold's training rows only)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    labels = pd.Series(check_fit_inputs(X, y), index=X.index)
    probe = LightGBMDirectionModel(base, name="lightgbm-trial")
    inner, val = probe.inner_split(X)
    if config.max_train_rows is not None and len(inner) > config.max_train_rows:
        times = X[base.timestamp_column].to_numpy()[inner]
        inner = inner[np.argsort(times, kind="stable")][-config.max_train_rows :]
        inner = np.sort(inner)
    X_in, y_in = X.iloc[inner], labels.iloc[inner]
    X_va, y_va = X.iloc[val], labels.iloc[val]

    sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=config.n_startup_trials)
    pruner: Any = (
        optuna.pruners.MedianPruner(
            n_startup_trials=max(1, config.n_startup_trials),
            n_warmup_steps=config.pruner_warmup_steps,
        )
        if config.pruning
        else optuna.pruners.NopPruner()
    )
    study = _fresh_study(storage, study_name, sampler, pruner)

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, config)
        model = LightGBMDirectionModel(
            base.model_copy(update={**params, "refit_full": False}), name="lightgbm-trial"
        )

        def report(iteration: int, loss: float) -> None:
            if iteration % config.report_every == 0:
                trial.report(loss, iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at iteration {iteration}")

        model.on_iteration = report if config.pruning else None
        started = time.perf_counter()
        model.fit(X_in, y_in, X_val=X_va, y_val=y_va)
        trial.set_user_attr("best_iteration", model.best_iteration_)
        trial.set_user_attr("fit_seconds", time.perf_counter() - started)
        return float(model.val_log_loss_)  # type: ignore[arg-type]

    study.optimize(
        objective, n_trials=config.n_trials, timeout=config.timeout_s, n_jobs=config.n_jobs
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"Optuna study {study_name!r}: no trial completed (all pruned or failed)")
    rows = []
    for t in study.trials:
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "value": float(t.value) if t.value is not None else np.nan,
            "last_step": t.last_step if t.last_step is not None else -1,
            "best_iteration": t.user_attrs.get("best_iteration", np.nan),
            "duration_s": t.duration.total_seconds() if t.duration is not None else np.nan,
            **{f"param.{k}": v for k, v in t.params.items()},
        })
    end = X_va[base.timestamp_column].max()
    return TuningResult(
        best_params=dict(study.best_trial.params),
        best_value=float(study.best_value),
        trials=pd.DataFrame(rows),
        study_name=study_name,
        storage=storage,
        data_end=str(end),
        extra={"n_inner_train": len(X_in), "n_val": len(X_va)},
    )


class TunedLightGBMModel:
    """A ``DirectionModel``: Optuna-tunes LightGBM on the training rows it is given, then fits
    the final model with the best parameters (inner split, early stopping, refit)."""

    family = "gbm"

    def __init__(
        self,
        base: LightGBMModelConfig,
        tuning: TuningConfig,
        *,
        name: str = "lightgbm",
        storage: str | None = None,
        study_name: str = "lightgbm",
    ) -> None:
        self.base, self.tuning = base, tuning
        self.name = name
        self.storage, self.study_name = storage, study_name
        self.model_: LightGBMDirectionModel | None = None
        self.result_: TuningResult | None = None

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_val: pd.DataFrame | None = None,
        y_val: pd.Series | None = None,
    ) -> Self:
        config = self.base
        self.result_ = None
        if self.tuning.enabled:
            self.result_ = tune_lightgbm(
                X, y, self.base, self.tuning, storage=self.storage, study_name=self.study_name
            )
            config = self.base.model_copy(update=self.result_.best_params)
        self.model_ = LightGBMDirectionModel(config, name=self.name).fit(
            X, y, X_val=X_val, y_val=y_val
        )
        return self

    def predict_proba_up(self, X: pd.DataFrame) -> np.ndarray:
        if self.model_ is None:
            from candlecast.models.base import NotFittedError

            raise NotFittedError(f"model {self.name!r} must be fit before predicting")
        return self.model_.predict_proba_up(X)

    @property
    def fitted(self) -> LightGBMDirectionModel:
        if self.model_ is None:
            from candlecast.models.base import NotFittedError

            raise NotFittedError(f"model {self.name!r} must be fit first")
        return self.model_

    def fit_info(self) -> dict[str, float]:
        info = dict(self.fitted.fit_info())
        if self.result_ is not None:
            info.update(
                tuning_trials=float(len(self.result_.trials)),
                tuning_pruned=float(self.result_.n_pruned),
                tuning_best_value=self.result_.best_value,
            )
        return info

    def fit_artifacts(self) -> dict[str, Any]:
        """The Optuna trials of this fit and the final model's feature importance."""
        out: dict[str, Any] = {"feature_importance": self.fitted.feature_importance()}
        if self.result_ is not None:
            out["trials"] = self.result_.trials
            out["best_params"] = self.result_.best_params
        return out

    def chosen_params(self) -> dict[str, Any]:
        """The booster parameters of the final model (tuned or as configured)."""
        return self.fitted.config.booster_params()

    def save(self, directory: str) -> Any:
        return self.fitted.save(directory)
