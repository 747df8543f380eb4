"""Baselines every model is reported beside: base rate, persistence and momentum.

Each maps a simple signal to P(up) through frequencies counted on the training set only, so a
baseline's probabilities are calibrated in-sample and honest out of sample. A model that does not
beat these after costs has learned nothing tradeable.

Smoothing: with ``prior_count`` ``a`` the base rate is ``(k + a/2) / (n + a)`` and the up-rate of
a signal state ``s`` is ``(k_s + a * base_rate) / (n_s + a)``, so thin states shrink toward the
base rate and a state never seen in training predicts the base rate. ``prior_count=0`` gives the
raw frequencies.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from candlecast.models.base import NotFittedError, check_fit_inputs, require_columns

#: Signal states of the sign models: down, flat (zero or missing), up.
SIGN_STATES: tuple[int, ...] = (-1, 0, 1)


class BaselineConfig(BaseModel):
    """Feature columns the baselines read, and the smoothing pseudo-count."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: last-bar return column (persistence: sign of the last return).
    persistence_feature: str = "logret_1"
    #: a signed momentum/trend column, e.g. the distance of close to an EMA (a price/MA
    #: crossover) or a multi-bar return. Ignored if ``momentum_fast``/``momentum_slow`` are set.
    momentum_feature: str = "ema_dist_20"
    #: optional pair of moving-average columns: signal = sign(fast - slow) (an MA crossover).
    momentum_fast: str | None = None
    momentum_slow: str | None = None
    prior_count: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="after")
    def _pair(self) -> BaselineConfig:
        if (self.momentum_fast is None) != (self.momentum_slow is None):
            raise ValueError("momentum_fast and momentum_slow must be given together")
        return self


def _base_rate(y: np.ndarray, prior_count: float) -> float:
    return float((y.sum() + prior_count / 2) / (len(y) + prior_count))


class BaseRateModel:
    """P(up) = the training set's up-frequency, for every row."""

    family = "baseline"

    def __init__(self, prior_count: float = 1.0, name: str = "base_rate") -> None:
        self.name = name
        self.prior_count = prior_count
        self.p_up_: float | None = None

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_val: pd.DataFrame | None = None,
        y_val: pd.Series | None = None,
    ) -> Self:
        labels = check_fit_inputs(X, y)
        self.p_up_ = _base_rate(labels, self.prior_count)
        return self

    def predict_proba_up(self, X: pd.DataFrame) -> np.ndarray:
        if self.p_up_ is None:
            raise NotFittedError(f"{self.name} must be fitted before predicting")
        return np.full(len(X), self.p_up_)


class SignFrequencyModel:
    """P(up | sign of a signal), counted on the training set. Subclasses define the signal."""

    family = "baseline"

    def __init__(self, name: str, prior_count: float = 1.0) -> None:
        self.name = name
        self.prior_count = prior_count
        self.base_rate_: float | None = None
        self.p_up_: dict[int, float] | None = None
        self.counts_: dict[int, int] | None = None

    def columns(self) -> list[str]:
        raise NotImplementedError

    def raw_signal(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def signal(self, X: pd.DataFrame) -> np.ndarray:
        """The sign state of every row: -1, 0 (zero or missing) or +1."""
        require_columns(X, self.columns(), f"baseline {self.name!r}")
        raw = np.asarray(self.raw_signal(X), dtype=float)
        return np.sign(np.nan_to_num(raw, nan=0.0)).astype(int)

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_val: pd.DataFrame | None = None,
        y_val: pd.Series | None = None,
    ) -> Self:
        labels = check_fit_inputs(X, y)
        state = self.signal(X)
        base = _base_rate(labels, self.prior_count)
        self.base_rate_ = base
        self.counts_ = {s: int((state == s).sum()) for s in SIGN_STATES}
        self.p_up_ = {
            s: float(
                (labels[state == s].sum() + self.prior_count * base)
                / (self.counts_[s] + self.prior_count)
            )
            if self.counts_[s] + self.prior_count > 0
            else base
            for s in SIGN_STATES
        }
        return self

    def predict_proba_up(self, X: pd.DataFrame) -> np.ndarray:
        if self.p_up_ is None:
            raise NotFittedError(f"{self.name} must be fitted before predicting")
        state = self.signal(X)
        lookup = np.array([self.p_up_[s] for s in SIGN_STATES])
        return lookup[state + 1]

    def describe(self) -> dict[str, float]:
        """Learned probabilities and counts per state (for logging)."""
        if self.p_up_ is None or self.counts_ is None:
            raise NotFittedError(f"{self.name} must be fitted before describing")
        names = {-1: "down", 0: "flat", 1: "up"}
        out = {f"p_up_{names[s]}": self.p_up_[s] for s in SIGN_STATES}
        out.update({f"n_{names[s]}": float(self.counts_[s]) for s in SIGN_STATES})
        return out


class PersistenceModel(SignFrequencyModel):
    """The last return's sign persists (or reverts): P(up | sign of the last return)."""

    def __init__(
        self, feature: str = "logret_1", prior_count: float = 1.0, name: str = "persistence"
    ) -> None:
        super().__init__(name, prior_count)
        self.feature = feature

    def columns(self) -> list[str]:
        return [self.feature]

    def raw_signal(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.feature].to_numpy(dtype=float)


class MomentumModel(SignFrequencyModel):
    """P(up | sign of a momentum signal): one signed column, or fast minus slow MA columns."""

    def __init__(
        self,
        feature: str | None = "ema_dist_20",
        *,
        fast: str | None = None,
        slow: str | None = None,
        prior_count: float = 1.0,
        name: str = "momentum",
    ) -> None:
        super().__init__(name, prior_count)
        if (fast is None) != (slow is None):
            raise ValueError("momentum needs both fast and slow columns, or neither")
        if fast is None and feature is None:
            raise ValueError("momentum needs a feature column or a fast/slow column pair")
        self.feature, self.fast, self.slow = feature, fast, slow

    def columns(self) -> list[str]:
        if self.fast is not None and self.slow is not None:
            return [self.fast, self.slow]
        assert self.feature is not None
        return [self.feature]

    def raw_signal(self, X: pd.DataFrame) -> np.ndarray:
        if self.fast is not None and self.slow is not None:
            return X[self.fast].to_numpy(dtype=float) - X[self.slow].to_numpy(dtype=float)
        assert self.feature is not None
        return X[self.feature].to_numpy(dtype=float)


def make_baselines(
    config: BaselineConfig | None = None,
) -> list[BaseRateModel | PersistenceModel | MomentumModel]:
    """Fresh, unfitted baselines: base rate, persistence, momentum."""
    config = config or BaselineConfig()
    return [
        BaseRateModel(config.prior_count),
        PersistenceModel(config.persistence_feature, config.prior_count),
        MomentumModel(
            config.momentum_feature,
            fast=config.momentum_fast,
            slow=config.momentum_slow,
            prior_count=config.prior_count,
        ),
    ]
