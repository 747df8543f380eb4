"""Stacked, calibrated ensemble of the direction models, trained on out-of-fold predictions only.

The meta-learner is a logistic regression on the logits of the base models' P(up) plus optional
extra inputs (GARCH vol, regime probabilities). It never sees an in-sample prediction: ``fit``
takes an :class:`OOFPredictions`, which can only be built from rows that lie inside walk-forward
test windows (or through the explicitly named :meth:`OOFPredictions.assume_out_of_fold`).

Calibration mirrors scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` but chronologically:
the meta-learner is refitted on inner, purged, expanding folds of the OOF rows, its predictions on
the later blocks (meta out-of-fold) are used to choose between no calibration, Platt scaling and
isotonic regression by log loss on further chronological folds, and the chosen calibrator is then
fitted on all meta out-of-fold predictions and applied on top of the meta-learner fitted on all
OOF rows. The same inner folds score a simple average of the base probabilities, so the report
says whether stacking beat averaging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from candlecast.evaluation.metrics import brier_score, log_loss
from candlecast.evaluation.splits import Fold, TimeAxis, chronological_folds
from candlecast.models.base import NotFittedError, check_binary_labels

CalibrationMethod = Literal["none", "platt", "isotonic"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("none", "platt", "isotonic")
#: Columns of :meth:`Stacker.predict`.
ENSEMBLE_OUTPUTS: tuple[str, ...] = ("prob_up", "confidence", "disagreement", "prob_mean")


class EnsembleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``auto`` picks the method with the lowest inner-fold log loss.
    calibration: Literal["auto", "none", "platt", "isotonic"] = "auto"
    #: inner chronological folds over the OOF rows (meta out-of-fold predictions).
    inner_folds: int = Field(default=4, ge=2, le=20)
    #: inverse L2 strength of the meta logistic regression.
    C: float = Field(default=1.0, gt=0)
    #: base probabilities are clipped to [clip, 1 - clip] before taking logits.
    clip: float = Field(default=1e-4, gt=0, lt=0.1)
    #: label horizon in time steps, for purging the inner folds.
    horizon: int = Field(default=1, ge=1)


def _check_probs(probs: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(probs, pd.DataFrame) or probs.shape[1] == 0:
        raise TypeError(f"{what} must be a DataFrame with one column of P(up) per base model")
    values = probs.to_numpy(dtype=float)
    missing = np.isnan(values).sum(axis=0)
    if missing.any():
        bad = {c: int(m) for c, m in zip(probs.columns, missing, strict=True) if m}
        raise ValueError(
            f"{what} has missing probabilities {bad} (a failed model or fold?); drop that model "
            "or those rows explicitly before stacking"
        )
    if ((values < 0) | (values > 1)).any():
        raise ValueError(f"{what} must hold probabilities in [0, 1]")
    return probs.astype(float)


@dataclass(frozen=True)
class OOFPredictions:
    """Base-model probabilities on rows none of the base models trained on.

    Build with :meth:`from_walk_forward`, which checks every row lies in the test window of
    the fold it is attributed to; :meth:`assume_out_of_fold` skips that check by name.
    """

    probs: pd.DataFrame
    y: np.ndarray
    fold: np.ndarray
    time: pd.Index

    @classmethod
    def from_walk_forward(
        cls,
        probs: pd.DataFrame,
        y: pd.Series | np.ndarray,
        times: Sequence[Any] | pd.Series | pd.Index,
        folds: Sequence[Fold],
    ) -> OOFPredictions:
        """Attribute each row to the walk-forward fold whose test window holds its time.

        Raises if any row's time is outside every test window: such a prediction could be
        in-sample for some base model and must not train the meta-learner.
        """
        probs = _check_probs(probs, "out-of-fold probabilities")
        index = pd.Index(times)
        if len(index) != len(probs):
            raise ValueError(f"{len(index)} times for {len(probs)} rows of probabilities")
        if not folds:
            raise ValueError("no walk-forward folds given")
        fold = np.full(len(index), -1)
        for f in folds:
            inside = np.asarray((index >= f.test_start) & (index <= f.test_end))
            fold[inside] = f.index
        outside = np.flatnonzero(fold < 0)
        if len(outside):
            raise ValueError(
                f"{len(outside)} rows are not in any walk-forward test window (first at time "
                f"{index[outside[0]]}); the meta-learner trains on out-of-fold predictions only"
            )
        return cls._build(probs, y, fold, index)

    @classmethod
    def assume_out_of_fold(
        cls,
        probs: pd.DataFrame,
        y: pd.Series | np.ndarray,
        fold: Sequence[int] | np.ndarray,
        times: Sequence[Any] | pd.Series | pd.Index,
    ) -> OOFPredictions:
        """Trust the caller that every row is out-of-fold (no window check). Use sparingly."""
        probs = _check_probs(probs, "out-of-fold probabilities")
        return cls._build(probs, y, np.asarray(fold, dtype=int), pd.Index(times))

    @classmethod
    def _build(
        cls, probs: pd.DataFrame, y: pd.Series | np.ndarray, fold: np.ndarray, time: pd.Index
    ) -> OOFPredictions:
        labels = check_binary_labels(y, "out-of-fold labels")
        if not len(labels) == len(probs) == len(fold) == len(time):
            raise ValueError(
                f"out-of-fold parts differ in length: probs {len(probs)}, y {len(labels)}, "
                f"fold {len(fold)}, time {len(time)}"
            )
        return cls(probs=probs, y=labels, fold=fold, time=time)

    def subset(self, rows: np.ndarray) -> OOFPredictions:
        return OOFPredictions(self.probs.iloc[rows], self.y[rows], self.fold[rows], self.time[rows])


def simple_average(probs: pd.DataFrame) -> np.ndarray:
    """The unweighted mean of the base probabilities per row (the baseline ensemble)."""
    return probs.to_numpy(dtype=float).mean(axis=1)


def disagreement(probs: pd.DataFrame) -> np.ndarray:
    """Population std of the base probabilities per row (0 when all models agree)."""
    return probs.to_numpy(dtype=float).std(axis=1, ddof=0)


def confidence(prob_up: np.ndarray) -> np.ndarray:
    """``|p - 0.5| * 2``: 0 for a coin flip, 1 for certainty."""
    return np.abs(np.asarray(prob_up, dtype=float) - 0.5) * 2


def return_z(prob_up: np.ndarray, volatility: np.ndarray, horizon: int,
             clip: float = 1e-4) -> np.ndarray:
    """The ``horizon``-bar log return a calibrated P(up) implies if that return were normal
    with standard deviation ``volatility x sqrt(horizon)`` (``volatility``: of one bar):
    ``sigma_h x Phi^-1(P(up))``. NaN where either input is unknown."""
    from scipy.special import ndtri

    p = np.clip(np.asarray(prob_up, dtype=float), clip, 1.0 - clip)
    return np.asarray(volatility, dtype=float) * np.sqrt(horizon) * ndtri(p)


#: the expected-return scale is clipped to this range (0: the forecast carries no return)
RETURN_SCALE_RANGE = (0.0, 2.0)


def fit_return_scale(prob_up: np.ndarray, volatility: np.ndarray, returns: np.ndarray,
                     horizon: int) -> float:
    """The slope ``beta`` of realized ``horizon``-bar returns on :func:`return_z` (least
    squares through the origin, over rows where all are known), clipped to
    :data:`RETURN_SCALE_RANGE`: ``E[r_h] = beta x sigma_h x Phi^-1(p)``. Fitted on predictions
    that are out of sample for the rows (the stacker's inner-fold predictions), so ``beta``
    measures how much of the implied move the forecast really carries (usually well below 1).
    """
    z = return_z(prob_up, volatility, horizon)
    r = np.asarray(returns, dtype=float)
    ok = np.isfinite(z) & np.isfinite(r)
    denominator = float(np.dot(z[ok], z[ok]))
    if ok.sum() < 2 or denominator <= 0:
        return 0.0
    beta = float(np.dot(z[ok], r[ok])) / denominator
    return float(np.clip(beta, *RETURN_SCALE_RANGE))


def expected_return(prob_up: np.ndarray, volatility: np.ndarray, horizon: int,
                    scale: float) -> np.ndarray:
    """``scale x sigma_h x Phi^-1(P(up))``: the forecast ``horizon``-bar log return."""
    return scale * return_z(prob_up, volatility, horizon)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p: np.ndarray, clip: float) -> np.ndarray:
    p = np.clip(p, clip, 1 - clip)
    return np.log(p / (1 - p))


class Calibrator:
    """A monotone map of probabilities: identity, Platt (logistic on the logit) or isotonic."""

    def __init__(self, method: CalibrationMethod, clip: float = 1e-4) -> None:
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}")
        self.method = method
        self.clip = clip
        self._model: LogisticRegression | IsotonicRegression | None = None

    def fit(self, p: np.ndarray, y: np.ndarray) -> Self:
        p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
        if self.method != "none" and len(np.unique(y)) < 2:
            raise ValueError("calibration needs both classes among its training labels")
        if self.method == "platt":
            self._model = LogisticRegression(C=1e6, solver="newton-cholesky", max_iter=1000)
            self._model.fit(_logit(p, self.clip)[:, None], y.astype(int))
        elif self.method == "isotonic":
            self._model = IsotonicRegression(
                y_min=self.clip, y_max=1 - self.clip, out_of_bounds="clip"
            )
            self._model.fit(p, y)
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.method == "none":
            return p
        if self._model is None:
            raise NotFittedError(f"{self.method} calibrator must be fitted before use")
        # plain numpy on the fitted parameters: the same numbers as sklearn's predict, without
        # its per-call validation overhead (this sits on the single-row serving path)
        if isinstance(self._model, LogisticRegression):
            z = _logit(p, self.clip) * self._model.coef_[0, 0] + self._model.intercept_[0]
            return _sigmoid(z)
        return np.interp(p, self._model.X_thresholds_, self._model.y_thresholds_)


def score_calibration_methods(
    p: np.ndarray,
    y: np.ndarray,
    times: Sequence[Any] | pd.Index,
    *,
    n_splits: int = 3,
    horizon: int = 1,
    clip: float = 1e-4,
    references: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Log loss and Brier of each calibration method on chronological, purged folds of ``p``.

    Every method is fitted on the earlier part and scored on the next block, for each fold;
    numbers are pooled over all scored rows (the same rows for every method). ``references``
    (name -> probabilities row-aligned with ``p``) are scored as-is on the same rows.
    """
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    folds = chronological_folds(times, n_splits, horizon=horizon)
    scored: dict[str, list[np.ndarray]] = {m: [] for m in CALIBRATION_METHODS}
    truth, rows_scored = [], []
    for f in folds:
        truth.append(y[f.test])
        rows_scored.append(f.test)
        for method in CALIBRATION_METHODS:
            calibrator = Calibrator(method, clip).fit(p[f.train], y[f.train])
            scored[method].append(calibrator.transform(p[f.test]))
    y_all = np.concatenate(truth)
    at = np.concatenate(rows_scored)
    candidates: dict[str, np.ndarray] = {m: np.concatenate(scored[m]) for m in CALIBRATION_METHODS}
    for name, ref in (references or {}).items():
        candidates[name] = np.asarray(ref, dtype=float)[at]
    rows = [
        {
            "method": name,
            "log_loss": log_loss(y_all, q),
            "brier": brier_score(y_all, q),
            "n": len(y_all),
        }
        for name, q in candidates.items()
    ]
    return pd.DataFrame(rows).set_index("method")


def _check_extra(extra: pd.DataFrame | None, n_rows: int) -> pd.DataFrame | None:
    if extra is None:
        return None
    if not isinstance(extra, pd.DataFrame):
        raise TypeError(f"extra inputs must be a DataFrame, got {type(extra).__name__}")
    if len(extra) != n_rows:
        raise ValueError(f"extra inputs have {len(extra)} rows, probabilities have {n_rows}")
    values = extra.to_numpy(dtype=float)
    if np.isnan(values).any():
        bad = extra.columns[np.isnan(values).any(axis=0)].tolist()
        raise ValueError(f"extra inputs {bad} have missing values; fill or drop those rows first")
    return extra.astype(float).reset_index(drop=True)


class _MetaLearner:
    """Logistic regression on base logits plus standardized extra inputs."""

    def __init__(self, C: float, clip: float) -> None:
        self.C, self.clip = C, clip
        self.models: list[str] = []
        self.extras: list[str] = []
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.lr: LogisticRegression | None = None

    def _design(self, probs: pd.DataFrame, extra: pd.DataFrame | None) -> np.ndarray:
        missing = [m for m in self.models if m not in probs.columns]
        if missing:
            raise ValueError(f"probabilities lack base models {missing} the ensemble was fitted on")
        if self.extras and (extra is None or [c for c in self.extras if c not in extra.columns]):
            raise ValueError(f"the ensemble was fitted with extra inputs {self.extras}")
        return self._design_values(
            probs[self.models].to_numpy(dtype=float),
            extra[self.extras].to_numpy(dtype=float) if self.extras else None,  # type: ignore[index]
        )

    def _design_values(self, probs: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
        """The design matrix from arrays: ``probs`` columns in ``models`` order, ``extra``
        columns in ``extras`` order."""
        parts = [_logit(probs, self.clip)]
        if self.extras:
            if extra is None:
                raise ValueError(f"the ensemble was fitted with extra inputs {self.extras}")
            assert self.center is not None and self.scale is not None
            parts.append((extra - self.center) / self.scale)
        return np.hstack(parts)

    def fit(self, probs: pd.DataFrame, extra: pd.DataFrame | None, y: np.ndarray) -> Self:
        if len(np.unique(y)) < 2:
            raise ValueError("the stacking meta-learner needs both classes among its labels")
        self.models = [str(c) for c in probs.columns]
        if extra is not None and extra.shape[1]:
            self.extras = [str(c) for c in extra.columns]
            values = extra.to_numpy(dtype=float)
            self.center = values.mean(axis=0)
            std = values.std(axis=0)
            self.scale = np.where(std > 0, std, 1.0)
        self.lr = LogisticRegression(C=self.C, solver="newton-cholesky", max_iter=1000)
        self.lr.fit(self._design(probs, extra), y.astype(int))
        return self

    def predict(self, probs: pd.DataFrame, extra: pd.DataFrame | None) -> np.ndarray:
        return self._predict_design(self._design(probs, extra))

    def _predict_design(self, design: np.ndarray) -> np.ndarray:
        assert self.lr is not None
        return _sigmoid(design @ self.lr.coef_[0] + self.lr.intercept_[0])

    def coefficients(self) -> pd.Series:
        assert self.lr is not None
        names = [f"logit_{m}" for m in self.models] + list(self.extras)
        coef = pd.Series(self.lr.coef_[0], index=names)
        coef["intercept"] = float(self.lr.intercept_[0])
        return coef


class Stacker:
    """Calibrated logistic stacking of base-model probabilities (see the module docstring).

    ``fit(oof, extra)`` takes :class:`OOFPredictions`; ``predict(probs, extra)`` returns
    ``prob_up, confidence, disagreement, prob_mean`` per row. Picklable (joblib/MLflow).
    """

    name = "ensemble"
    family = "ensemble"

    def __init__(self, config: EnsembleConfig | None = None) -> None:
        self.config = config or EnsembleConfig()
        self.meta_: _MetaLearner | None = None
        self.calibrator_: Calibrator | None = None
        self.calibration_: CalibrationMethod | None = None
        self.inner_scores_: pd.DataFrame | None = None

    @property
    def models(self) -> list[str]:
        if self.meta_ is None:
            raise NotFittedError("ensemble must be fitted first")
        return list(self.meta_.models)

    def fit(self, oof: OOFPredictions, extra: pd.DataFrame | None = None) -> Self:
        if not isinstance(oof, OOFPredictions):
            raise TypeError(
                "Stacker.fit takes OOFPredictions (OOFPredictions.from_walk_forward), "
                f"not {type(oof).__name__}: the meta-learner may only see out-of-fold predictions"
            )
        cfg = self.config
        extra = _check_extra(extra, len(oof.probs))
        probs = oof.probs.reset_index(drop=True)
        parts, rows = [], []
        for f in chronological_folds(oof.time, cfg.inner_folds, horizon=cfg.horizon):
            meta = _MetaLearner(cfg.C, cfg.clip).fit(
                probs.iloc[f.train], None if extra is None else extra.iloc[f.train], oof.y[f.train]
            )
            parts.append(
                meta.predict(probs.iloc[f.test], None if extra is None else extra.iloc[f.test])
            )
            rows.append(f.test)
        at = np.concatenate(rows)
        meta_oof = np.concatenate(parts)
        scores = score_calibration_methods(
            meta_oof,
            oof.y[at],
            oof.time[at],
            n_splits=cfg.inner_folds - 1,
            horizon=cfg.horizon,
            clip=cfg.clip,
            references={"simple_average": simple_average(probs.iloc[at])},
        )
        if cfg.calibration == "auto":
            chosen = scores.loc[list(CALIBRATION_METHODS), "log_loss"].idxmin()
        else:
            chosen = cfg.calibration
        scores["chosen"] = scores.index == chosen
        self.inner_scores_ = scores
        self.calibration_ = chosen
        self.calibrator_ = Calibrator(chosen, cfg.clip).fit(meta_oof, oof.y[at])
        self.meta_ = _MetaLearner(cfg.C, cfg.clip).fit(probs, extra, oof.y)
        #: the calibrated inner-fold predictions and the OOF rows they are for: predictions
        #: no part of the stack was fitted on (the expected-return scale is fitted on them)
        self.inner_prob_ = self.calibrator_.transform(meta_oof)
        self.inner_rows_ = at
        return self

    def return_scale(self, returns: np.ndarray, volatility: np.ndarray) -> float:
        """:func:`fit_return_scale` on the inner-fold predictions of the rows this stacker was
        fitted on (``returns``/``volatility`` row-aligned with the fitted OOF rows)."""
        if self.meta_ is None:
            raise NotFittedError("stacker must be fitted first")
        rows = self.inner_rows_
        return fit_return_scale(self.inner_prob_, np.asarray(volatility, dtype=float)[rows],
                                np.asarray(returns, dtype=float)[rows], self.config.horizon)

    def predict(
        self, probs: pd.DataFrame, extra: pd.DataFrame | None = None, *, calibrated: bool = True
    ) -> pd.DataFrame:
        if self.meta_ is None or self.calibrator_ is None:
            raise NotFittedError("ensemble must be fitted before predicting")
        probs = _check_probs(probs, "base-model probabilities")
        checked = _check_extra(extra, len(probs))
        missing = [m for m in self.meta_.models if m not in probs.columns]
        if missing:
            raise ValueError(f"probabilities lack base models {missing} the ensemble was fitted on")
        ordered = probs[self.meta_.models].reset_index(drop=True)
        p = self.meta_.predict(ordered, checked)
        if calibrated:
            p = self.calibrator_.transform(p)
        return pd.DataFrame(
            {
                "prob_up": p,
                "confidence": confidence(p),
                "disagreement": disagreement(ordered),
                "prob_mean": simple_average(ordered),
            },
            index=probs.index,
        )

    @property
    def extras(self) -> list[str]:
        """The extra inputs the meta-learner was fitted with, in its order."""
        if self.meta_ is None:
            raise NotFittedError("ensemble must be fitted first")
        return list(self.meta_.extras)

    def predict_values(
        self, probs: np.ndarray, extra: np.ndarray | None = None, *, calibrated: bool = True
    ) -> dict[str, np.ndarray]:
        """:meth:`predict` on arrays (the serving path): ``probs`` ``(n, len(models))`` in
        :attr:`models` order, ``extra`` ``(n, len(extras))`` in :attr:`extras` order (or None
        without extras). Same checks and the same arithmetic, so the same numbers; returns the
        :data:`ENSEMBLE_OUTPUTS` columns as arrays."""
        if self.meta_ is None or self.calibrator_ is None:
            raise NotFittedError("ensemble must be fitted before predicting")
        probs = np.asarray(probs, dtype=float)
        if probs.ndim != 2 or probs.shape[1] != len(self.meta_.models):
            raise ValueError(f"base-model probabilities must have shape (n, "
                             f"{len(self.meta_.models)}) for {self.meta_.models}")
        missing = np.isnan(probs).sum(axis=0)
        if missing.any():
            bad = {m: int(k) for m, k in zip(self.meta_.models, missing, strict=True) if k}
            raise ValueError(
                f"base-model probabilities has missing probabilities {bad} (a failed model or "
                "fold?); drop that model or those rows explicitly before stacking"
            )
        if ((probs < 0) | (probs > 1)).any():
            raise ValueError("base-model probabilities must hold probabilities in [0, 1]")
        if extra is not None:
            extra = np.asarray(extra, dtype=float)
            if extra.shape != (len(probs), len(self.meta_.extras)):
                raise ValueError(f"extra inputs must have shape ({len(probs)}, "
                                 f"{len(self.meta_.extras)}) for {self.meta_.extras}")
            if np.isnan(extra).any():
                bad = [c for c, m in zip(self.meta_.extras, np.isnan(extra).any(axis=0),
                                         strict=True) if m]
                raise ValueError(
                    f"extra inputs {bad} have missing values; fill or drop those rows first"
                )
        p = self.meta_._predict_design(self.meta_._design_values(probs, extra))
        if calibrated:
            p = self.calibrator_.transform(p)
        return {
            "prob_up": p,
            "confidence": confidence(p),
            "disagreement": probs.std(axis=1, ddof=0),
            "prob_mean": probs.mean(axis=1),
        }

    def coefficients(self) -> pd.Series:
        """Meta-learner weights per input (``logit_<model>``, extras) and the intercept."""
        if self.meta_ is None:
            raise NotFittedError("ensemble must be fitted first")
        return self.meta_.coefficients()


def stack_walk_forward(
    oof: OOFPredictions,
    config: EnsembleConfig | None = None,
    extra: pd.DataFrame | None = None,
    *,
    min_train_folds: int = 2,
    returns: np.ndarray | None = None,
    volatility: np.ndarray | None = None,
) -> pd.DataFrame:
    """Out-of-sample ensemble predictions: fold ``k`` is predicted by an ensemble fitted on the
    OOF rows of earlier folds only (purged by ``config.horizon``).

    Returns a frame indexed like ``oof.probs`` (rows of the predicted folds) with ``fold, y``,
    the :data:`ENSEMBLE_OUTPUTS` (``prob_mean`` is the simple-average ensemble) and the
    calibration method each fold's ensemble chose. With ``returns`` (realized
    ``config.horizon``-bar log returns) and ``volatility`` (one bar's forecast std) per OOF
    row, also ``return_scale`` (fitted on the earlier folds only) and ``exp_ret``, the
    forecast ``config.horizon``-bar log return.
    """
    config = config or EnsembleConfig()
    extra = _check_extra(extra, len(oof.probs))
    fold_ids = np.unique(oof.fold)
    ends = {k: oof.time[oof.fold == k].max() for k in fold_ids}
    for prev, k in zip(fold_ids, fold_ids[1:], strict=False):
        if not oof.time[oof.fold == k].min() > ends[prev]:
            raise ValueError(f"fold {k} starts before fold {prev} ends; folds must be in order")
    if len(fold_ids) <= min_train_folds:
        raise ValueError(
            f"{len(fold_ids)} folds of out-of-fold predictions; need more than "
            f"min_train_folds={min_train_folds} to evaluate the ensemble out of sample"
        )
    position = TimeAxis.of(oof.time).position
    frames = []
    for k in fold_ids[min_train_folds:]:
        test = np.flatnonzero(oof.fold == k)
        start = position[test].min()
        train = np.flatnonzero((oof.fold < k) & (position + config.horizon < start))
        ensemble = Stacker(config).fit(
            oof.subset(train), None if extra is None else extra.iloc[train]
        )
        pred = ensemble.predict(oof.probs.iloc[test], None if extra is None else extra.iloc[test])
        pred.insert(0, "fold", k)
        pred.insert(1, "y", oof.y[test])
        pred["calibration"] = ensemble.calibration_
        if returns is not None and volatility is not None:
            scale = ensemble.return_scale(np.asarray(returns)[train],
                                          np.asarray(volatility)[train])
            pred["return_scale"] = scale
            pred["exp_ret"] = expected_return(pred["prob_up"].to_numpy(),
                                              np.asarray(volatility, dtype=float)[test],
                                              config.horizon, scale)
        frames.append(pred)
    return pd.concat(frames)
