"""Paired (moving-block) bootstrap of a per-period return difference. Pure."""

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


def paired_bootstrap(challenger: np.ndarray, champion: np.ndarray, *, n_resamples: int = 2000,
                     block_size: int = 1, seed: int = 0,
                     confidence: float = 0.9) -> BootstrapResult:
    """Bootstrap the mean of ``d = challenger - champion`` (paired by position).

    Resamples ``n`` values as ``ceil(n / block_size)`` blocks of ``block_size`` consecutive
    differences with uniformly drawn starts (circular), so autocorrelation within a block is
    kept (``block_size=1``: the ordinary iid bootstrap). Returns the observed mean, a
    percentile interval at ``confidence`` and the one-sided p-value ``P*(mean* <= 0)``.
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
    d = a - b
    n = len(d)
    block = min(block_size, n)
    n_blocks = -(-n // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_resamples, n_blocks))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_resamples, -1)
    means = d[index[:, :n] % n].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return BootstrapResult(
        n=n, mean_diff=float(d.mean()), ci_low=float(low), ci_high=float(high),
        p_value=float(np.mean(means <= 0.0)), n_resamples=n_resamples, block_size=block,
    )
