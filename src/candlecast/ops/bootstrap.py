"""Paired (moving-block) bootstrap of the difference of a statistic of two per-period return
series (their mean, Sharpe or Calmar ratio). Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapResult:
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    #: one-sided: share of resampled mean differences <= 0 (small = challenger really better)
    p_value: float
    n_resamples: int
    block_size: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def statistic(returns: np.ndarray, kind: str) -> np.ndarray:
    """Per row of a (resamples x periods) matrix of per-period simple returns: the ``mean``,
    the (per-period) ``sharpe`` ratio or the ``calmar`` ratio (mean return over the maximum
    drawdown of the compounded path), unannualized."""
    r = np.atleast_2d(np.asarray(returns, dtype=float))
    if kind == "mean":
        return r.mean(axis=1)
    if kind == "sharpe":
        std = r.std(axis=1, ddof=1)
        return np.divide(r.mean(axis=1), std, out=np.zeros(len(r)), where=std > 0)
    if kind == "calmar":
        path = np.cumprod(1.0 + r, axis=1)
        peak = np.maximum.accumulate(np.concatenate([np.ones((len(r), 1)), path], axis=1),
                                     axis=1)[:, 1:]
        drawdown = (1.0 - path / peak).max(axis=1)
        return np.divide(r.mean(axis=1), drawdown, out=np.zeros(len(r)), where=drawdown > 0)
    raise ValueError(f"unknown statistic {kind!r}; expected mean, sharpe or calmar")


def paired_bootstrap(challenger: np.ndarray, champion: np.ndarray, *, n_resamples: int = 2000,
                     block_size: int = 1, seed: int = 0,
                     confidence: float = 0.9, kind: str = "mean") -> BootstrapResult:
    """Bootstrap ``stat(challenger) - stat(champion)`` (paired by position; ``kind``: see
    :func:`statistic`).

    Resamples ``n`` periods as ``ceil(n / block_size)`` blocks of ``block_size`` consecutive
    periods with uniformly drawn starts (circular), the SAME periods for both series, so
    autocorrelation within a block and the pairing are kept (``block_size=1``: the ordinary
    iid bootstrap). Returns the observed difference (``mean_diff``), a percentile interval at
    ``confidence`` and the one-sided p-value ``P*(diff* <= 0)``.
    """
    a, b = np.asarray(challenger, dtype=float), np.asarray(champion, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired returns must be 1-d and of equal length, got {a.shape} "
                         f"and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"paired bootstrap needs at least 2 periods, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired returns must be finite")
    if block_size < 1 or n_resamples < 1:
        raise ValueError("block_size and n_resamples must be at least 1")
    n = len(a)
    block = min(block_size, n)
    n_blocks = -(-n // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_resamples, n_blocks))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_resamples, -1)
    rows = index[:, :n] % n
    observed = float((statistic(a, kind) - statistic(b, kind))[0])
    if kind == "mean":  # the mean of the differences (cheaper, and exactly the same number)
        diffs = (a - b)[rows].mean(axis=1)
    else:
        diffs = np.empty(n_resamples)
        for lo in range(0, n_resamples, 256):  # bounded memory: 256 resampled paths at once
            part = rows[lo:lo + 256]
            diffs[lo:lo + 256] = statistic(a[part], kind) - statistic(b[part], kind)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return BootstrapResult(
        n=n, mean_diff=observed, ci_low=float(low), ci_high=float(high),
        p_value=float(np.mean(diffs <= 0.0)), n_resamples=n_resamples, block_size=block,
    )
