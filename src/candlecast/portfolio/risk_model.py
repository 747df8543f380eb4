"""The book's risk model (pure): a single-index covariance, risk-parity weights, book
volatility and beta.

Coin ``i`` has a volatility forecast ``s_i`` (one bar's return std, e.g. GARCH) and a
correlation ``c_i`` with the market factor (the basket: ``xs_corr``). Under the single-index
model the correlation of two coins is ``c_i c_j``, so ``cov_ij = c_i c_j s_i s_j`` off the
diagonal and ``s_i^2`` on it: vols from the forecast, co-movement from the window. A missing
correlation counts as 1 (fully correlated: with money, over- rather than under-state risk).
"""

from __future__ import annotations

import math

import numpy as np


def covariance(volatility: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """The single-index covariance of one bar's returns (see the module docstring)."""
    s = np.asarray(volatility, dtype=float)
    c = np.asarray(correlation, dtype=float)
    c = np.where(np.isfinite(c), np.clip(c, -1.0, 1.0), 1.0)
    cov = np.outer(c * s, c * s)
    np.fill_diagonal(cov, s * s)
    return cov


def risk_parity(cov: np.ndarray, sweeps: int = 100, tol: float = 1e-12) -> np.ndarray:
    """Long-only weights summing to 1 whose risk contributions ``w_i (C w)_i`` are equal
    (cyclical coordinate descent, Griveau-Billion et al. 2013); equals inverse-volatility
    weights when the coins are uncorrelated."""
    c = np.asarray(cov, dtype=float)
    n = len(c)
    if n == 1:
        return np.ones(1)
    diag = np.diag(c)
    if not (diag > 0).all():
        raise ValueError("risk parity needs a positive variance for every coin")
    w = 1.0 / np.sqrt(diag)
    w /= w.sum()
    budget = 1.0 / n
    for _ in range(sweeps):
        before = w.copy()
        for i in range(n):
            others = float(c[i] @ w - c[i, i] * w[i])
            w[i] = (-others + math.sqrt(others * others + 4.0 * c[i, i] * budget)) / (2 * c[i, i])
        if np.abs(w - before).max() < tol * max(1.0, np.abs(w).max()):
            break
    return w / w.sum()


def book_volatility(weights: np.ndarray, cov: np.ndarray, bars_per_year: float) -> float:
    """Annualized volatility of a book with ``weights`` (fractions of equity)."""
    w = np.asarray(weights, dtype=float)
    variance = float(w @ cov @ w)
    return math.sqrt(max(variance, 0.0) * bars_per_year)


def book_beta(weights: np.ndarray, beta: np.ndarray) -> float:
    """The book's beta to the basket; a coin without a beta counts as 1."""
    b = np.asarray(beta, dtype=float)
    return float(np.asarray(weights, dtype=float) @ np.where(np.isfinite(b), b, 1.0))
