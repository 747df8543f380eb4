"""Vectorised building blocks for the batch features.

Window functions run over the whole series (windows that straddle a gap are computed but later
masked by age, which is exact: a window lying inside one run sees the same numbers either way).
Recursive filters (EMA, Wilder) cannot be masked, so they restart in every run (a Python loop
over runs, numpy/scipy inside each run).

Accuracy rather than speed tricks: sums come from explicit windows (no cumsum differences, which
lose digits on long series) and variances are two-pass, so batch and incremental agree to ~1e-14.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

NAN = np.nan
_CHUNK = 1 << 16  # rows per block for the (rows x window) temporaries


def lag(x: np.ndarray, k: int, fill: float = 0.0) -> np.ndarray:
    """``x`` shifted ``k`` rows later (``out[i] = x[i-k]``), the first ``k`` rows = ``fill``."""
    out = np.empty_like(x)
    out[:k] = fill
    out[k:] = x[: len(x) - k]
    return out


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    return sliding_window_view(x, w)


def _rolling(x: np.ndarray, w: int, reduce: str) -> np.ndarray:
    """``reduce`` ("sum", "max", "min") of the ``w`` values ending at each row (NaN for the
    first ``w-1`` rows)."""
    out = np.full(len(x), NAN)
    if len(x) >= w:
        out[w - 1 :] = getattr(_windows(x, w), reduce)(axis=1)
    return out


def rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum of the ``w`` values ending at each row (NaN for the first ``w-1`` rows)."""
    return _rolling(x, w, "sum")


def rolling_mean(x: np.ndarray, w: int) -> np.ndarray:
    return rolling_sum(x, w) / w


def rolling_mean_std(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and population standard deviation (two-pass per window, chunked)."""
    n = len(x)
    mean = np.full(n, NAN)
    std = np.full(n, NAN)
    if n < w:
        return mean, std
    win = _windows(x, w)
    for lo in range(0, len(win), _CHUNK):
        block = win[lo : lo + _CHUNK]
        m = block.sum(axis=1) / w
        dev = block - m[:, None]
        mean[w - 1 + lo : w - 1 + lo + len(block)] = m
        std[w - 1 + lo : w - 1 + lo + len(block)] = np.sqrt(np.einsum("ij,ij->i", dev, dev) / w)
    return mean, std


def rolling_max(x: np.ndarray, w: int) -> np.ndarray:
    return _rolling(x, w, "max")


def rolling_min(x: np.ndarray, w: int) -> np.ndarray:
    return _rolling(x, w, "min")


def rolling_dot(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_j weights[j] * x[i-w+1+j]`` for each row ``i`` (NaN for the first ``w-1`` rows)."""
    w = len(weights)
    out = np.full(len(x), NAN)
    if len(x) >= w:
        win = _windows(x, w)
        for lo in range(0, len(win), _CHUNK):
            block = win[lo : lo + _CHUNK]
            out[w - 1 + lo : w - 1 + lo + len(block)] = block @ weights
    return out


def ema_runs(
    x: np.ndarray, n: int, alpha: float, offset: int, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Seeded exponential smoothing restarted in every run ``[starts[k], ends[k])``.

    In each run the input is used from ``offset`` bars after the run start; the first output is
    the plain mean of the first ``n`` inputs (at age ``offset + n - 1``), then
    ``y = alpha * x + (1 - alpha) * y``. ``alpha = 2/(n+1)`` is the usual EMA, ``1/n`` Wilder's
    smoothing. Same arithmetic, in the same order, as :class:`~candlecast.features.streaming.EMA`.
    """
    from scipy.signal import lfilter  # here: scipy.signal takes ~1.5 s to import, and every
    # `candlecast` command imports this module through the config (features/__init__)

    out = np.full(len(x), NAN)
    beta = 1.0 - alpha
    b, a = np.array([alpha]), np.array([1.0, -beta])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        p = s + offset
        if e - p < n:
            continue
        seed = float(np.cumsum(x[p : p + n])[-1]) / n  # sequential sum, like the streaming seed
        out[p + n - 1] = seed
        if e > p + n:
            out[p + n : e] = lfilter(b, a, x[p + n : e], zi=np.array([beta * seed]))[0]
    return out


def mask_young(values: np.ndarray, age: np.ndarray, first_age: int) -> np.ndarray:
    """Set rows whose age is below ``first_age`` to NaN, in place; returns ``values``."""
    values[age < first_age] = NAN
    return values


def safe_ratio(num: np.ndarray, den: np.ndarray, when_zero: float) -> np.ndarray:
    """``num / den`` where ``den > 0``, ``when_zero`` where ``den == 0``, NaN where either is NaN.

    Never divides by zero, so it is safe under ``np.seterr(all="raise")``.
    """
    out = np.full(len(num), NAN)
    ok = den > 0
    np.divide(num, den, out=out, where=ok)
    out[den == 0] = when_zero
    out[np.isnan(num)] = NAN
    return out
