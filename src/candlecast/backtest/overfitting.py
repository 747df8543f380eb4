"""Statistics that tell how much of a backtest is luck.

* :func:`deflated_sharpe_ratio`: Bailey & Lopez de Prado (2014), "The Deflated Sharpe Ratio:
  Correcting for Selection Bias, Backtest Overfitting and Non-Normality". Probability that the
  true Sharpe ratio is above the best one expected from ``n_trials`` unskilled trials.
* :func:`probability_of_backtest_overfitting`: Bailey, Borwein, Lopez de Prado & Zhu (2017),
  combinatorially symmetric cross-validation (CSCV).
* :func:`block_bootstrap`: circular block bootstrap confidence intervals for total return and
  max drawdown (blocks keep volatility clustering that an IID bootstrap would destroy).
* :func:`risk_of_ruin`: Monte Carlo over resampled trade returns; :func:`risk_of_ruin_even_bets`
  the closed form for even-money bets, as a check.

Sharpe ratios here are PER PERIOD (not annualized), as in the papers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


def moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-period Sharpe ratio, skewness and (non-excess) kurtosis of ``returns``."""
    r = np.asarray(returns, dtype=float)
    sd = float(np.std(r, ddof=1))
    mean = float(np.mean(r))
    centered = r - mean
    m2 = float(np.mean(centered**2))
    skew = float(np.mean(centered**3)) / m2**1.5 if m2 > 0 else 0.0
    kurt = float(np.mean(centered**4)) / m2**2 if m2 > 0 else 3.0
    return (mean / sd if sd > 0 else math.nan), skew, kurt


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skew: float = 0.0, kurtosis: float = 3.0
) -> float:
    """P(true SR > ``benchmark``) given an observed per-period ``sharpe`` over ``n_obs``."""
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if n_obs < 2 or denom <= 0:
        return math.nan
    return _N.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum per-period SR of ``n_trials`` independent trials whose true SR is 0 and
    whose estimated SRs have variance ``sharpe_variance`` (false strategy theorem)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    z1 = _N.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _N.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(
    returns: np.ndarray,
    n_trials: int,
    sharpe_variance: float | None = None,
    trial_sharpes: np.ndarray | None = None,
) -> dict[str, float]:
    """DSR of the selected strategy's per-bar ``returns`` after ``n_trials`` tried.

    The variance of the trials' Sharpe ratios comes from ``trial_sharpes`` (per period) when
    given, else ``sharpe_variance``, else the estimator variance of the observed SR,
    (1 - skew SR + (kurt - 1) / 4 SR^2) / (T - 1), i.e. what unskilled trials on data like this
    would scatter by. Returns the DSR with its ingredients.
    """
    r = np.asarray(returns, dtype=float)
    n_obs = len(r)
    if n_obs < 3:
        raise ValueError(f"deflated_sharpe_ratio needs at least 3 returns, got {n_obs}")
    sharpe, skew, kurt = moments(r)
    if trial_sharpes is not None and len(trial_sharpes) >= 2:
        variance = float(np.var(np.asarray(trial_sharpes, dtype=float), ddof=1))
    elif sharpe_variance is not None:
        variance = float(sharpe_variance)
    else:
        s = 0.0 if math.isnan(sharpe) else sharpe
        variance = (1.0 - skew * s + (kurt - 1.0) / 4.0 * s**2) / (n_obs - 1)
    sr0 = expected_max_sharpe(n_trials, variance)
    dsr = probabilistic_sharpe_ratio(sharpe, sr0, n_obs, skew, kurt) if sharpe == sharpe else (
        math.nan)
    return {"dsr": dsr, "sharpe": sharpe, "sharpe_threshold": sr0, "n_trials": n_trials,
            "sharpe_variance": variance, "skew": skew, "kurtosis": kurt, "n_obs": n_obs}


def per_period_sharpes(returns: np.ndarray | None) -> np.ndarray | None:
    """Per-period Sharpe ratio of each column of a (bars x trials) return matrix (0 where a
    column does not move): the spread of trial Sharpes that deflates the selected one."""
    if returns is None:
        return None
    std = returns.std(axis=0, ddof=1)
    return np.divide(returns.mean(axis=0), std, out=np.zeros(returns.shape[1]), where=std > 0)


def _sharpe_columns(block: np.ndarray) -> np.ndarray:
    sd = block.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, block.mean(axis=0) / sd, 0.0)


def probability_of_backtest_overfitting(
    trial_returns: np.ndarray,
    n_blocks: int = 16,
    metric: Callable[[np.ndarray], np.ndarray] | str = "sharpe",
) -> dict[str, object]:
    """PBO by CSCV from a (T bars x N trials) matrix of per-bar returns.

    Rows are cut into ``n_blocks`` (even) contiguous blocks; for each of the C(S, S/2) ways to
    pick half of them as in-sample, the trial best in-sample is ranked out-of-sample; PBO is
    the share of splits where it ranks at or below the median (logit <= 0). ``metric`` maps a
    (rows x N) block to N scores ("sharpe", "mean" or a callable).
    """
    m = np.asarray(trial_returns, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"trial_returns must be a 2-D (bars x trials) array with >= 2 trials, "
                         f"got shape {m.shape}")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be an even number >= 2, got {n_blocks}")
    if m.shape[0] < n_blocks:
        raise ValueError(f"{m.shape[0]} bars cannot be cut into {n_blocks} blocks")
    if np.isnan(m).any():
        raise ValueError("trial_returns contain NaN")
    score = {"sharpe": _sharpe_columns, "mean": lambda b: b.mean(axis=0)}.get(metric, metric) \
        if isinstance(metric, str) else metric
    if isinstance(score, str):
        raise ValueError(f"unknown metric {metric!r}; expected 'sharpe', 'mean' or a callable")
    blocks = np.array_split(np.arange(m.shape[0]), n_blocks)
    n_trials = m.shape[1]
    splits = list(combinations(range(n_blocks), n_blocks // 2))
    if metric in ("sharpe", "mean"):
        is_scores, oos_scores = _split_scores_from_blocks(m, blocks, splits, metric)
    else:
        is_scores = np.empty((len(splits), n_trials))
        oos_scores = np.empty((len(splits), n_trials))
        for k, chosen in enumerate(splits):
            rest = [b for b in range(n_blocks) if b not in chosen]
            is_scores[k] = score(m[np.concatenate([blocks[b] for b in chosen])])
            oos_scores[k] = score(m[np.concatenate([blocks[b] for b in rest])])
    logits = []
    for is_score, oos in zip(is_scores, oos_scores, strict=True):
        best = int(np.argmax(is_score))
        rank = 1 + int(np.sum(oos < oos[best])) + 0.5 * int(np.sum(oos == oos[best]) - 1)
        omega = rank / (n_trials + 1)
        logits.append(math.log(omega / (1.0 - omega)))
    lam = np.asarray(logits)
    return {"pbo": float(np.mean(lam <= 0)), "logits": lam, "n_splits": len(lam)}


def _split_scores_from_blocks(
    m: np.ndarray, blocks: list[np.ndarray], splits: list[tuple[int, ...]], metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """In- and out-of-sample mean or Sharpe of every split from per-block sums (the same
    numbers as scoring the concatenated rows, in O(splits x blocks x trials) instead of
    O(splits x bars x trials)). Columns are centred first so the variance does not cancel."""
    centre = m.mean(axis=0)
    c = m - centre
    counts = np.array([len(b) for b in blocks], dtype=float)
    sums = np.stack([c[b].sum(axis=0) for b in blocks])          # blocks x trials
    squares = np.stack([(c[b] ** 2).sum(axis=0) for b in blocks])
    chosen = np.zeros((len(splits), len(blocks)))
    for k, split in enumerate(splits):
        chosen[k, list(split)] = 1.0

    def scores(mask: np.ndarray) -> np.ndarray:
        n = (mask @ counts)[:, None]
        s, q = mask @ sums, mask @ squares
        mean = centre + s / n
        if metric == "mean":
            return mean
        var = np.maximum(q - s * s / n, 0.0) / (n - 1)
        sd = np.sqrt(var)
        tiny = 1e-12 * np.maximum(np.abs(mean), 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sd > tiny, mean / sd, 0.0)

    return scores(chosen), scores(1.0 - chosen)


def block_bootstrap(
    returns: np.ndarray,
    n_samples: int = 500,
    block_size: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Circular block bootstrap CIs for total return and max drawdown of per-bar ``returns``.

    ``block_size`` defaults to round(T ** (1/3)). Deterministic for a given ``seed``.
    """
    r = np.asarray(returns, dtype=float)
    n = len(r)
    if n < 2:
        raise ValueError(f"block_bootstrap needs at least 2 returns, got {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    size = block_size if block_size is not None else max(1, round(n ** (1 / 3)))
    if not 1 <= size <= n:
        raise ValueError(f"block_size must be in [1, {n}], got {size}")
    rng = np.random.default_rng(seed)
    log_r = np.log1p(r)
    n_blocks = -(-n // size)
    totals, drawdowns = np.empty(n_samples), np.empty(n_samples)
    chunk = max(1, 2_000_000 // n)
    offsets = np.arange(size)
    for lo in range(0, n_samples, chunk):
        hi = min(n_samples, lo + chunk)
        starts = rng.integers(0, n, size=(hi - lo, n_blocks))
        idx = ((starts[:, :, None] + offsets) % n).reshape(hi - lo, -1)[:, :n]
        path = np.cumsum(log_r[idx], axis=1)
        totals[lo:hi] = np.expm1(path[:, -1])
        peak = np.maximum.accumulate(np.maximum(path, 0.0), axis=1)
        drawdowns[lo:hi] = -np.expm1((path - peak).min(axis=1))
    tail = (1 - confidence) / 2 * 100
    return {
        "total_return": tuple(np.percentile(totals, [tail, 100 - tail]).tolist()),
        "max_drawdown": tuple(np.percentile(drawdowns, [tail, 100 - tail]).tolist()),
    }


def risk_of_ruin(
    trade_returns: np.ndarray,
    ruin_drawdown: float = 0.5,
    n_trades: int | None = None,
    n_sims: int = 2000,
    seed: int = 0,
) -> float:
    """Probability that compounding resampled ``trade_returns`` (fractions of equity) ever
    loses ``ruin_drawdown`` of the starting equity within ``n_trades`` trades (default: as
    many as observed). Monte Carlo with ``n_sims`` paths."""
    r = np.asarray(trade_returns, dtype=float)
    if len(r) == 0:
        return math.nan
    if not 0 < ruin_drawdown <= 1:
        raise ValueError(f"ruin_drawdown must be in (0, 1], got {ruin_drawdown}")
    horizon = n_trades if n_trades is not None else len(r)
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        log_r = np.log(np.maximum(1.0 + r, 0.0))
    floor = math.log(1.0 - ruin_drawdown) if ruin_drawdown < 1 else -math.inf
    ruined = np.zeros(n_sims, dtype=bool)
    chunk = max(1, 2_000_000 // max(1, horizon))
    for lo in range(0, n_sims, chunk):
        hi = min(n_sims, lo + chunk)
        paths = np.cumsum(log_r[rng.integers(0, len(r), size=(hi - lo, horizon))], axis=1)
        ruined[lo:hi] = (paths <= floor + 1e-12).any(axis=1)
    return float(ruined.mean())


def risk_of_ruin_even_bets(win_probability: float, capital_units: int) -> float:
    """Closed form for +1/-1 unit bets: ((1 - p) / p) ** units when p > 1/2, else 1."""
    p = win_probability
    if not 0 <= p <= 1:
        raise ValueError(f"win_probability must be in [0, 1], got {p}")
    return 1.0 if p <= 0.5 else ((1 - p) / p) ** capital_units
