"""Walk-forward splits with purging and embargo, cut on the shared time axis of all series.

Every model is trained and evaluated on the same folds. A fold's test window is a block of
consecutive time steps; its training set holds only earlier time steps (expanding from the start
of the data, or a rolling window of fixed length), minus

* **purge**: a training sample whose label looks ``horizon`` time steps ahead (or, if given, whose
  ``label_end`` time) reaches into the test window is dropped. With label horizon ``h`` a sample at
  axis position ``i`` is kept only if ``i + h < test_start``;
* **embargo**: the ``embargo`` time steps right after every test window are never used for
  training in any fold, so serial correlation around an evaluated window cannot leak into a later
  model that is compared on it.

Positions refer to the sorted distinct timestamps of the input (the *time axis*). Rows of several
series stacked in one frame share that axis, so all series have the same fold boundaries and a
row's position does not depend on the row order. Test windows are anchored at the END of the data:
the last fold always tests the latest ``test_size`` time steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator


class WalkForwardConfig(BaseModel):
    """Fold layout in time steps (bars of the shared time axis)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Literal["expanding", "rolling"] = "expanding"
    #: rolling: the training window length; expanding: the minimum training length of fold 0.
    #: Both counted after purging (before the embargo).
    train_size: int = Field(default=8000, ge=1)
    #: time steps per test window.
    test_size: int = Field(default=4000, ge=1)
    #: distance between consecutive test-window starts; ``None`` means ``test_size``
    #: (contiguous test windows). Must be >= ``test_size`` so test windows never overlap.
    step: int | None = Field(default=None, ge=1)
    #: how many time steps ahead the label looks (purge width).
    horizon: int = Field(default=1, ge=1)
    #: time steps after each test window excluded from every training set.
    embargo: int = Field(default=0, ge=0)
    #: keep only the latest ``max_folds`` folds (``None``: all that fit).
    max_folds: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _step_not_smaller_than_test(self) -> WalkForwardConfig:
        if self.step is not None and self.step < self.test_size:
            raise ValueError(
                f"walk-forward step ({self.step}) must be >= test_size ({self.test_size}); "
                "a smaller step would make test windows overlap"
            )
        return self

    @property
    def effective_step(self) -> int:
        return self.test_size if self.step is None else self.step

    def min_time_steps(self) -> int:
        """The fewest distinct timestamps that give at least one fold."""
        return self.train_size + self.horizon + self.test_size


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: row positions into the input and the window boundaries.

    ``train_end``/``test_end`` are inclusive (the last timestamp in the part).
    """

    index: int
    train: np.ndarray
    test: np.ndarray
    train_start: Any
    train_end: Any
    test_start: Any
    test_end: Any

    def describe(self) -> dict[str, str | int]:
        """Flat, string-valued summary (for MLflow tags and logs)."""
        return {
            "fold": self.index,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "train_start": str(self.train_start),
            "train_end": str(self.train_end),
            "test_start": str(self.test_start),
            "test_end": str(self.test_end),
        }


@dataclass(frozen=True)
class TimeAxis:
    """The sorted distinct timestamps of an input and each row's position on them."""

    values: pd.Index
    position: np.ndarray

    @classmethod
    def of(cls, times: Sequence[Any] | pd.Series | pd.Index | np.ndarray) -> TimeAxis:
        index = pd.Index(times)
        if len(index) == 0:
            raise ValueError("cannot split an empty set of timestamps")
        if index.hasnans:
            first = int(np.flatnonzero(index.isna())[0])
            raise ValueError(f"timestamps must not be missing; first missing at row {first}")
        values = index.unique().sort_values()
        return cls(values=values, position=values.get_indexer(index))

    def __len__(self) -> int:
        return len(self.values)

    def label_end_positions(
        self, horizon: int, label_end: Sequence[Any] | pd.Series | pd.Index | None
    ) -> np.ndarray:
        """Per row, the last axis position its label depends on.

        ``position + horizon``, or later if ``label_end`` says so (the last axis position at or
        before the row's label end time). A missing label end means "unknown": the row is never
        usable for training.
        """
        end = self.position + horizon
        if label_end is None:
            return end
        ends = pd.Index(label_end)
        if len(ends) != len(self.position):
            raise ValueError(
                f"label_end has {len(ends)} values but there are {len(self.position)} timestamps"
            )
        known = ~np.asarray(ends.isna())
        try:
            at = self.values.searchsorted(ends[known], side="right") - 1
            before_start = np.asarray(ends[known] < self.values[self.position[known]])
        except TypeError as exc:
            raise TypeError(
                f"label_end values ({ends.dtype}) are not comparable with the timestamps "
                f"({self.values.dtype}): {exc}"
            ) from exc
        if before_start.any():
            row = int(np.flatnonzero(known)[np.flatnonzero(before_start)[0]])
            raise ValueError(f"label_end is before the sample's own timestamp at row {row}")
        out = np.full(len(end), np.iinfo(np.int64).max // 2, dtype=np.int64)
        out[known] = np.maximum(end[known], at)
        return out


def _test_windows(n: int, config: WalkForwardConfig) -> list[tuple[int, int]]:
    """``[start, end)`` axis positions of every test window, oldest first, anchored at the end."""
    first_allowed = config.train_size + config.horizon
    if n < config.min_time_steps():
        raise ValueError(
            f"walk-forward needs at least train_size + horizon + test_size = "
            f"{config.train_size} + {config.horizon} + {config.test_size} = "
            f"{config.min_time_steps()} distinct timestamps, got {n}"
        )
    windows = []
    end = n
    while end - config.test_size >= first_allowed:
        windows.append((end - config.test_size, end))
        end -= config.effective_step
    windows.reverse()
    if config.max_folds is not None:
        windows = windows[-config.max_folds :]
    return windows


def walk_forward_splits(
    times: Sequence[Any] | pd.Series | pd.Index | np.ndarray,
    config: WalkForwardConfig,
    *,
    label_end: Sequence[Any] | pd.Series | pd.Index | None = None,
) -> list[Fold]:
    """Purged, embargoed walk-forward folds over ``times`` (one timestamp per row, any order).

    ``label_end`` (optional, one per row) is the time the row's label is realised; pass it when
    labels were computed per series on rows with gaps, so purging follows real time rather than
    ``horizon`` axis steps. Returns folds oldest first; ``Fold.train``/``Fold.test`` are row
    positions into ``times``.
    """
    axis = TimeAxis.of(times)
    windows = _test_windows(len(axis), config)
    label_last = axis.label_end_positions(config.horizon, label_end)
    embargoed = np.zeros(len(axis) + 1, dtype=bool)
    for _, end in windows:
        embargoed[end : end + config.embargo] = True
    row_embargoed = embargoed[axis.position]
    folds = []
    for k, (start, end) in enumerate(windows):
        lowest = 0 if config.scheme == "expanding" else start - config.horizon - config.train_size
        train_mask = (
            (axis.position >= lowest)
            & (axis.position < start)
            & (label_last < start)
            & ~row_embargoed
        )
        test_mask = (axis.position >= start) & (axis.position < end)
        train, test = np.flatnonzero(train_mask), np.flatnonzero(test_mask)
        if len(train) == 0:
            raise ValueError(
                f"walk-forward fold {k} (test from {axis.values[start]}) has no training samples "
                "left after purging and embargo; lower horizon/embargo or raise train_size"
            )
        train_pos = axis.position[train]
        folds.append(
            Fold(
                index=k,
                train=train,
                test=test,
                train_start=axis.values[train_pos.min()],
                train_end=axis.values[train_pos.max()],
                test_start=axis.values[start],
                test_end=axis.values[end - 1],
            )
        )
    return folds


def folds_table(folds: Sequence[Fold]) -> pd.DataFrame:
    """One row per fold with sizes and boundaries (for reports and MLflow)."""
    return pd.DataFrame([f.describe() for f in folds])


def chronological_validation_split(
    times: Sequence[Any] | pd.Series | pd.Index | np.ndarray,
    val_fraction: float = 0.2,
    *,
    horizon: int = 1,
    label_end: Sequence[Any] | pd.Series | pd.Index | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training part into inner-train and a later validation block, purged.

    The validation block is the last ``ceil(val_fraction * n)`` distinct timestamps; inner-train
    rows whose label reaches into it are dropped (same rule as the walk-forward purge). Returns
    row positions into ``times``. Used for early stopping and calibration inside a fold.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    axis = TimeAxis.of(times)
    n_val = int(np.ceil(val_fraction * len(axis)))
    start = len(axis) - n_val
    if start - horizon < 1:
        raise ValueError(
            f"{len(axis)} distinct timestamps are too few for a validation fraction of "
            f"{val_fraction} with horizon {horizon}"
        )
    label_last = axis.label_end_positions(horizon, label_end)
    train = np.flatnonzero((axis.position < start) & (label_last < start))
    val = np.flatnonzero(axis.position >= start)
    if len(train) == 0:
        raise ValueError("no inner-training samples left after purging before the validation block")
    return train, val


def chronological_folds(
    times: Sequence[Any] | pd.Series | pd.Index | np.ndarray,
    n_splits: int,
    *,
    horizon: int = 1,
    embargo: int = 0,
    label_end: Sequence[Any] | pd.Series | pd.Index | None = None,
) -> list[Fold]:
    """``n_splits`` expanding, purged inner folds covering the later part of ``times``.

    The axis is cut into ``n_splits + 1`` equal blocks (the remainder goes to the first training
    block); fold ``k`` trains on everything before block ``k + 1`` and tests on it. Used inside a
    fold's training part (e.g. to choose a calibration method) and on out-of-fold predictions.
    """
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    n = len(TimeAxis.of(times))
    block = n // (n_splits + 1)
    if block < 1 or n - n_splits * block - horizon < 1:
        raise ValueError(
            f"{n} distinct timestamps are too few for {n_splits} chronological folds "
            f"with horizon {horizon}"
        )
    config = WalkForwardConfig(
        scheme="expanding",
        train_size=n - n_splits * block - horizon,
        test_size=block,
        horizon=horizon,
        embargo=embargo,
    )
    return walk_forward_splits(times, config, label_end=label_end)
