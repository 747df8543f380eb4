"""Run direction models across walk-forward folds: out-of-fold predictions and fold outcomes.

Pure core of the model zoo: a frame and folds in, a long prediction frame out. For every fold
the models are built fresh (``build(fold)``), fitted on the fold's training rows only and asked
for P(up) on its test rows. Nothing a model sees at fit time lies in or after the test window
(the folds are purged and embargoed by :mod:`candlecast.evaluation.splits`).

Sequence models (Chronos, the transformer) read the candles before each row. With ``history``
(every feature row of every series, labelled or not) and ``context_bars > 0``, a fold's test
rows are predicted inside the frame of ALL rows from ``context_bars`` bars before the test
window up to its end, so the first test rows have their past; features are causal, so rows in
the purge gap are legitimate context. Only the test rows' predictions are kept.

A model that raises in a fold (or returns a wrong-length, NaN or out-of-range answer) is
recorded in ``failures`` (``model, fold, error``) and the run continues: the comparison shows it
as failed instead of silently dropping it. Errors raised by ``build`` are configuration errors
and propagate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from candlecast.evaluation.splits import Fold
from candlecast.models.base import DirectionModel
from candlecast.models.base_predictions import base_prediction

#: Columns of the out-of-fold prediction frame, in order (``regime`` only when joined).
OOF_COLUMNS: tuple[str, ...] = (
    "model", "family", "fold", "series", "timestamp", "y", "prob_up", "ret",
)
FAILURE_COLUMNS: tuple[str, ...] = ("model", "fold", "error")


@dataclass(frozen=True)
class DataSpec:
    """Which columns of the training frame are what."""

    feature_columns: tuple[str, ...]
    label: str
    target_return: str | None = None
    series_column: str = "series_id"
    time_column: str = "event_timestamp"
    #: one bar of the series (for the context window of sequence models).
    bar: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(minutes=30))

    @property
    def model_columns(self) -> list[str]:
        """What a model's ``X`` holds: series key, decision time and the features."""
        return [self.series_column, self.time_column, *self.feature_columns]


@dataclass
class FoldOutcome:
    """One model on one fold: timings, status and (if it worked) its test predictions."""

    model: str
    family: str
    fold: Fold
    status: str
    error: str = ""
    fit_seconds: float = float("nan")
    predict_seconds: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)
    #: larger things a model reports about its fit (``fit_artifacts()``: Optuna trials, ...).
    artifacts: dict[str, Any] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None

    def describe(self) -> dict[str, Any]:
        """Flat row for the fold table (boundaries, sizes, timings, fit info)."""
        return {
            "model": self.model,
            "family": self.family,
            **self.fold.describe(),
            "status": self.status,
            "error": self.error,
            "fit_seconds": self.fit_seconds,
            "predict_seconds": self.predict_seconds,
            **{f"info.{k}": v for k, v in self.info.items()},
        }


@dataclass
class WalkForwardResult:
    predictions: pd.DataFrame
    failures: pd.DataFrame
    outcomes: list[FoldOutcome]
    #: the fitted models of the latest fold where they succeeded (for serving and the bench).
    final_models: dict[str, DirectionModel]

    def fold_table(self) -> pd.DataFrame:
        return pd.DataFrame([o.describe() for o in self.outcomes])


def _fit_info(model: Any) -> dict[str, Any]:
    """Whatever a fitted model reports about itself (``fit_info``, ``describe`` or attributes)."""
    for method in ("fit_info", "describe"):
        if callable(getattr(model, method, None)):
            try:
                return {str(k): v for k, v in dict(getattr(model, method)()).items()}
            except Exception:  # noqa: BLE001 - reporting must never fail a fold
                return {}
    info = {}
    for attr in ("best_val_loss_", "epochs_trained_"):
        value = getattr(model, attr, None)
        if isinstance(value, int | float):
            info[attr.rstrip("_")] = value
    return info


def _fit_artifacts(model: Any) -> dict[str, Any]:
    if callable(getattr(model, "fit_artifacts", None)):
        try:
            return dict(model.fit_artifacts())
        except Exception:  # noqa: BLE001 - reporting must never fail a fold
            return {}
    return {}


def _check_probabilities(prob: Any, n: int, who: str) -> np.ndarray:
    values = np.asarray(prob, dtype=float)
    if values.shape != (n,):
        raise ValueError(f"{who} returned {values.shape} probabilities for {n} rows")
    if np.isnan(values).any():
        raise ValueError(f"{who} returned {int(np.isnan(values).sum())} NaN probabilities")
    if ((values < 0) | (values > 1)).any():
        raise ValueError(f"{who} returned probabilities outside [0, 1]")
    return values


def _prediction_frame(
    test: pd.DataFrame, spec: DataSpec, history: pd.DataFrame | None, context_bars: int, fold: Fold
) -> tuple[pd.DataFrame, np.ndarray]:
    """The frame a model predicts on and the positions of the test rows in it."""
    cols = spec.model_columns
    X_test = test[cols].reset_index(drop=True)
    if history is None or context_bars <= 0:
        return X_test, np.arange(len(X_test))
    times = history[spec.time_column]
    start = fold.test_start - context_bars * spec.bar
    window = history.loc[
        (times >= start)
        & (times <= fold.test_end)
        & history[spec.series_column].isin(X_test[spec.series_column].unique()),
        cols,
    ].reset_index(drop=True)
    keys = pd.MultiIndex.from_frame(window[[spec.series_column, spec.time_column]])
    wanted = pd.MultiIndex.from_frame(X_test[[spec.series_column, spec.time_column]])
    at = keys.get_indexer(wanted)
    if (at < 0).any():  # test rows absent from the history frame: predict them with their own rows
        window = pd.concat([window, X_test.iloc[np.flatnonzero(at < 0)]], ignore_index=True)
        keys = pd.MultiIndex.from_frame(window[[spec.series_column, spec.time_column]])
        at = keys.get_indexer(wanted)
    return window, at


def run_fold(
    models: Sequence[DirectionModel],
    data: pd.DataFrame,
    fold: Fold,
    spec: DataSpec,
    *,
    history: pd.DataFrame | None = None,
    context_bars: int = 0,
) -> tuple[list[FoldOutcome], dict[str, DirectionModel]]:
    """Fit every model on ``fold.train`` and predict ``fold.test``; failures are recorded."""
    train, test = data.iloc[fold.train], data.iloc[fold.test]
    X_train = train[spec.model_columns].reset_index(drop=True)
    y_train = train[spec.label].reset_index(drop=True)
    X_pred, at = _prediction_frame(test, spec, history, context_bars, fold)
    outcomes, fitted = [], {}
    for model in models:
        family = getattr(model, "family", "unknown")
        outcome = FoldOutcome(model.name, family, fold, status="ok")
        try:
            started = time.perf_counter()
            model.fit(X_train, y_train)
            outcome.fit_seconds = time.perf_counter() - started
            outcome.info = _fit_info(model)
            outcome.artifacts = _fit_artifacts(model)
            started = time.perf_counter()
            prob, extras = base_prediction(model, X_pred)
            outcome.predict_seconds = time.perf_counter() - started
            prob = _check_probabilities(prob, len(X_pred), f"model {model.name!r}")[at]
        except Exception as exc:  # noqa: BLE001 - a failed fold is reported, not fatal
            outcome.status = "failed"
            outcome.error = f"{type(exc).__name__}: {exc}"[:500]
            outcomes.append(outcome)
            continue
        frame = pd.DataFrame({
            "model": model.name,
            "family": family,
            "fold": fold.index,
            "series": test[spec.series_column].to_numpy(),
            "timestamp": test[spec.time_column].to_numpy(),
            "y": test[spec.label].to_numpy(dtype=float),
            "prob_up": prob,
            "ret": test[spec.target_return].to_numpy(dtype=float)
            if spec.target_return
            else np.nan,
        })
        for name, values in extras.items():
            frame[name] = np.asarray(values, dtype=float)[at]
        outcome.predictions = frame
        outcomes.append(outcome)
        fitted[model.name] = model
    return outcomes, fitted


#: what one fold gives: its outcomes (one per model) and the models that fitted
FoldResult = tuple[list[FoldOutcome], dict[str, DirectionModel]]
#: runs ``fit(fold)`` for every fold and returns the results in fold order (a task runner)
FoldMapper = Callable[[Callable[[Fold], FoldResult], Sequence[Fold]], Sequence[FoldResult]]


def fit_fold(
    build: Callable[[Fold], Sequence[DirectionModel]],
    data: pd.DataFrame,
    spec: DataSpec,
    history: pd.DataFrame | None,
    context_bars: int,
    fold: Fold,
) -> FoldResult:
    """One unit of walk-forward work: the models ``build(fold)`` returns on one fold."""
    return run_fold(build(fold), data, fold, spec, history=history, context_bars=context_bars)


def run_walk_forward(
    build: Callable[[Fold], Sequence[DirectionModel]],
    data: pd.DataFrame,
    folds: Sequence[Fold],
    spec: DataSpec,
    *,
    history: pd.DataFrame | None = None,
    context_bars: int = 0,
    regimes: pd.DataFrame | None = None,
    on_outcome: Callable[[FoldOutcome], None] | None = None,
    map_folds: FoldMapper | None = None,
) -> WalkForwardResult:
    """Every model ``build(fold)`` returns, fitted and scored on every fold (oldest first).

    ``data`` holds one labelled row per series and decision time (no missing labels);
    ``folds`` index its rows. ``regimes`` (``series, timestamp, regime``) is joined onto the
    predictions when given. ``on_outcome`` is called after each model and fold (logging).
    ``map_folds(fit, folds)`` runs the per-fold unit :func:`fit_fold` (the default: one after
    the other, here); it must return the results in the order of ``folds``, which makes the
    result independent of where and in which order the folds ran (every model is built fresh
    per fold with its own seed).
    """
    missing = [c for c in (*spec.model_columns, spec.label) if c not in data.columns]
    if spec.target_return and spec.target_return not in data.columns:
        missing.append(spec.target_return)
    if missing:
        raise ValueError(f"walk-forward data lacks columns {missing}")
    if data[spec.label].isna().any():
        raise ValueError(f"label {spec.label!r} has missing values; drop those rows first")
    outcomes: list[FoldOutcome] = []
    final: dict[str, DirectionModel] = {}
    unit = partial(fit_fold, build, data, spec, history, context_bars)
    per_fold = map_folds(unit, list(folds)) if map_folds is not None else [
        unit(fold) for fold in folds
    ]
    for fold_outcomes, fitted in per_fold:  # oldest fold first, whatever the runner
        for outcome in fold_outcomes:
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        final.update(fitted)
    frames = [o.predictions for o in outcomes if o.predictions is not None]
    predictions = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=list(OOF_COLUMNS))
    )
    if regimes is not None and len(predictions):
        predictions = attach_regimes(predictions, regimes)
    predictions = predictions.sort_values(
        ["model", "fold", "timestamp", "series"], kind="stable"
    ).reset_index(drop=True)
    failures = pd.DataFrame(
        [{"model": o.model, "fold": o.fold.index, "error": o.error}
         for o in outcomes if o.status == "failed"],
        columns=list(FAILURE_COLUMNS),
    )
    return WalkForwardResult(predictions, failures, outcomes, final)


def attach_regimes(predictions: pd.DataFrame, regimes: pd.DataFrame) -> pd.DataFrame:
    """Left-join the hard ``regime`` label (and nothing else) on ``series, timestamp``."""
    need = {"series", "timestamp", "regime"}
    if not need <= set(regimes.columns):
        raise ValueError(f"regime frame needs columns {sorted(need)}, got {list(regimes.columns)}")
    keyed = regimes[["series", "timestamp", "regime"]].drop_duplicates(["series", "timestamp"])
    out = predictions.drop(columns=["regime"], errors="ignore")
    return out.merge(keyed, on=["series", "timestamp"], how="left", validate="many_to_one")
