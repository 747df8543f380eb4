"""The interface every direction model implements, and the input checks they share.

A direction model maps a feature frame (one row per series and decision time) to P(next return
> 0). The walk-forward runner, the metrics and the ensemble only ever see this interface, so a
baseline, LightGBM, Chronos and the transformer are trained and evaluated the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

#: Model families, used as MLflow tags and in comparison tables.
FAMILIES: tuple[str, ...] = ("baseline", "gbm", "foundation", "neural", "regime", "ensemble")


class NotFittedError(RuntimeError):
    """A model was asked to predict before ``fit``."""


@runtime_checkable
class DirectionModel(Protocol):
    """Predicts the probability that the next labelled return is positive.

    ``fit`` may use ``X_val``/``y_val`` for early stopping or calibration; it must not look at
    anything else. ``predict_proba_up`` returns a float array of ``len(X)`` values in [0, 1],
    row-aligned with ``X``.
    """

    name: str
    family: str

    # Every model spells this signature out again (baselines, LightGBM and its tuned wrapper,
    # Chronos-2, the transformer): a deliberate mirror of the protocol, so each ``fit`` reads on
    # its own and type checkers compare it with this one. `duplicates src` lists those pairs.
    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_val: pd.DataFrame | None = None,
        y_val: pd.Series | None = None,
    ) -> Self: ...

    def predict_proba_up(self, X: pd.DataFrame) -> np.ndarray: ...


@runtime_checkable
class ReturnQuantileModel(Protocol):
    """Optional extra of a direction model: quantiles of the next return.

    Returns a frame row-aligned with ``X`` with one column per quantile level, named
    ``q0.1``-style by :func:`quantile_column`.
    """

    def predict_return_quantiles(
        self, X: pd.DataFrame, quantiles: Sequence[float]
    ) -> pd.DataFrame: ...


def quantile_column(level: float) -> str:
    """The column name of a quantile level: ``0.1 -> 'q0.1'``, ``0.05 -> 'q0.05'``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {level}")
    return f"q{level:g}"


def check_binary_labels(y: pd.Series | np.ndarray, what: str = "y") -> np.ndarray:
    """``y`` as a float array of 0.0/1.0, or a ``ValueError`` naming the offending values."""
    values = np.asarray(y, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError(f"{what} has {int(np.isnan(values).sum())} missing labels")
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"{what} must hold binary labels 0/1; got {values[bad][0]!r} at position "
            f"{int(np.flatnonzero(bad)[0])}"
        )
    return values


def check_fit_inputs(X: pd.DataFrame, y: pd.Series, what: str = "training") -> np.ndarray:
    """Check a fit call's ``X``/``y`` pair; return the labels as a float array."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{what} features must be a pandas DataFrame, got {type(X).__name__}")
    labels = check_binary_labels(y, f"{what} labels")
    if len(X) != len(labels):
        raise ValueError(f"{what} features have {len(X)} rows but labels have {len(labels)}")
    if len(labels) == 0:
        raise ValueError(f"{what} set is empty")
    return labels


def require_columns(X: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    """Raise a ``ValueError`` naming the columns ``who`` needs but ``X`` lacks."""
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(
            f"{who} needs feature columns {missing}; the frame has {list(X.columns)[:20]}"
            + (" ..." if X.shape[1] > 20 else "")
        )
