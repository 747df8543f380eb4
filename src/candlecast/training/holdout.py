"""A chronological train/validation/test hold-out on the shared time axis of all series.

Parts are cut on time, not on rows, so every series has the same boundaries, and ``purge`` time
steps are dropped before each boundary: a sample whose label looks ``purge`` steps ahead would
otherwise see into the next part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Holdout:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    boundaries: dict[str, str]


def chronological_holdout(times: pd.Series, train: float, val: float, purge: int = 1) -> Holdout:
    """Row positions of the train, validation and test parts of ``times`` (any order)."""
    if times.isna().any():
        raise ValueError("timestamps must not be missing")
    if purge < 0:
        raise ValueError(f"purge must be >= 0, got {purge}")
    unique = np.sort(times.unique())
    n = len(unique)
    n_train, n_val = int(n * train), int(n * val)
    if min(n_train - purge, n_val - purge, n - n_train - n_val) < 1:
        raise ValueError(
            f"{n} time steps are too few for a train/val/test split of {train}/{val} "
            f"with purge {purge}"
        )
    train_end = unique[n_train - purge]  # exclusive
    val_start, val_end = unique[n_train], unique[n_train + n_val - purge]
    test_start = unique[n_train + n_val]
    values = times.to_numpy()
    return Holdout(
        train=np.flatnonzero(values < train_end),
        val=np.flatnonzero((values >= val_start) & (values < val_end)),
        test=np.flatnonzero(values >= test_start),
        boundaries={
            "train_end": str(pd.Timestamp(train_end)),
            "val_start": str(pd.Timestamp(val_start)),
            "test_start": str(pd.Timestamp(test_start)),
            "test_end": str(pd.Timestamp(unique[-1])),
        },
    )
