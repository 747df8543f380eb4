"""Quantile forecasts read as a direction (pure): P(up) from the forecast CDF at zero, and
interpolation between quantile levels (used by the Chronos model and the ensemble)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _sorted_knots(levels: Sequence[float], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tau = np.asarray(levels, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 2 or vals.shape[1] != len(tau):
        raise ValueError(f"quantile values must have shape (n, {len(tau)}), got {vals.shape}")
    if np.isnan(vals).any():
        bad = int(np.isnan(vals).any(axis=1).sum())
        raise ValueError(f"quantile forecast has NaN values in {bad} rows")
    # Monotone rearrangement: a forecast with crossing quantiles is read as its sorted values.
    return tau, np.sort(vals, axis=1)


def prob_up_from_quantiles(
    levels: Sequence[float], values: np.ndarray, threshold: float = 0.0
) -> np.ndarray:
    """``P(return > threshold)`` per row from quantile forecasts ``values`` (n, len(levels)).

    ``F`` interpolates linearly between the knots ``(values[:, k], levels[k])``; below the first
    knot it is ``levels[0]`` and above the last ``levels[-1]`` (no tail extrapolation, so the
    answer stays within ``[1 - levels[-1], 1 - levels[0]]``). If the threshold equals a run of
    tied knots, ``F`` is the midpoint of their levels.
    """
    tau, vals = _sorted_knots(levels, values)
    n, k = vals.shape
    below = (vals < threshold).sum(axis=1)
    at_or_below = (vals <= threshold).sum(axis=1)
    cdf = np.empty(n, dtype=np.float64)
    tie = at_or_below > below
    cdf[tie] = (tau[below[tie]] + tau[at_or_below[tie] - 1]) / 2.0
    first = ~tie & (below == 0)
    last = ~tie & (below == k)
    cdf[first] = tau[0]
    cdf[last] = tau[-1]
    inner = ~tie & ~first & ~last
    rows = np.flatnonzero(inner)
    hi = below[inner]
    v_lo, v_hi = vals[rows, hi - 1], vals[rows, hi]
    cdf[inner] = tau[hi - 1] + (tau[hi] - tau[hi - 1]) * (threshold - v_lo) / (v_hi - v_lo)
    return 1.0 - cdf


def interpolate_quantiles(
    levels: Sequence[float], values: np.ndarray, query: Sequence[float]
) -> np.ndarray:
    """Values at ``query`` levels (n, len(query)), linear between knots, clamped outside."""
    tau, vals = _sorted_knots(levels, values)
    out = np.empty((len(vals), len(query)), dtype=np.float64)
    for j, q in enumerate(query):
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {q}")
        hi = int(np.clip(np.searchsorted(tau, q), 1, len(tau) - 1))
        w = float(np.clip((q - tau[hi - 1]) / (tau[hi] - tau[hi - 1]), 0.0, 1.0))
        out[:, j] = (1.0 - w) * vals[:, hi - 1] + w * vals[:, hi]
    return out
