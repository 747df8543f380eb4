"""Performance metrics: pure functions of an equity curve, returns or trade PnLs.

Conventions: ``equity`` is the per-bar equity at each close, starting with the initial equity
(so n bars give n - 1 returns); ratios are annualized with ``bars_per_year`` (8,760 for hourly
crypto bars: markets never close); the risk-free rate is 0. Undefined values (e.g. a Sharpe
ratio of a constant curve) are NaN, never a made-up 0.
"""

from __future__ import annotations

import math

import numpy as np

NAN = math.nan


def simple_returns(equity: np.ndarray) -> np.ndarray:
    equity = np.asarray(equity, dtype=float)
    return equity[1:] / equity[:-1] - 1.0


def total_return(equity: np.ndarray) -> float:
    return float(equity[-1] / equity[0] - 1.0)


def annualized_return(equity: np.ndarray, bars_per_year: float) -> float:
    """Compound annual growth: (end / start) ** (bars_per_year / (n - 1)) - 1."""
    periods = len(equity) - 1
    if periods <= 0 or equity[-1] <= 0:
        return -1.0 if periods > 0 else NAN
    return float((equity[-1] / equity[0]) ** (bars_per_year / periods) - 1.0)


def annualized_volatility(returns: np.ndarray, bars_per_year: float) -> float:
    if len(returns) < 2:
        return NAN
    return float(np.std(returns, ddof=1) * math.sqrt(bars_per_year))


def sharpe_ratio(returns: np.ndarray, bars_per_year: float) -> float:
    """Annualized mean / standard deviation (ddof=1) of per-bar returns."""
    if len(returns) < 2:
        return NAN
    sd = float(np.std(returns, ddof=1))
    return NAN if sd == 0 else float(np.mean(returns) / sd * math.sqrt(bars_per_year))


def sortino_ratio(returns: np.ndarray, bars_per_year: float) -> float:
    """Annualized mean / downside deviation, the latter sqrt(mean(min(r, 0)^2)) over ALL bars."""
    if len(returns) < 2:
        return NAN
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    return NAN if downside == 0 else float(np.mean(returns) / downside * math.sqrt(bars_per_year))


def drawdown_curve(equity: np.ndarray) -> np.ndarray:
    """Per-bar drawdown from the running peak, as a non-negative fraction."""
    equity = np.asarray(equity, dtype=float)
    return 1.0 - equity / np.maximum.accumulate(equity)


def max_drawdown(equity: np.ndarray) -> float:
    return float(drawdown_curve(equity).max())


def max_drawdown_duration(equity: np.ndarray) -> int:
    """Longest run of bars spent below a previous peak (until recovery or the end)."""
    under = drawdown_curve(equity) > 0
    if not under.any():
        return 0
    padded = np.concatenate([[False], under, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def calmar_ratio(equity: np.ndarray, bars_per_year: float) -> float:
    mdd = max_drawdown(equity)
    return NAN if mdd == 0 else annualized_return(equity, bars_per_year) / mdd


def trade_statistics(pnl: np.ndarray) -> dict[str, float]:
    """Win rate, profit factor, average win/loss (loss as a negative number), expectancy (mean
    PnL per trade) and count, from the net PnL of closed trades."""
    pnl = np.asarray(pnl, dtype=float)
    count = len(pnl)
    if count == 0:
        return {"trade_count": 0, "win_rate": NAN, "profit_factor": NAN, "avg_win": NAN,
                "avg_loss": NAN, "expectancy": NAN}
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = -float(losses.sum())
    return {
        "trade_count": count,
        "win_rate": len(wins) / count,
        "profit_factor": (float(wins.sum()) / gross_loss) if gross_loss > 0 else (
            math.inf if len(wins) else NAN),
        "avg_win": float(wins.mean()) if len(wins) else NAN,
        "avg_loss": float(losses.mean()) if len(losses) else NAN,
        "expectancy": float(pnl.mean()),
    }


def exposure(position: np.ndarray) -> float:
    """Share of bars closing with an open position."""
    return float(np.mean(np.asarray(position) != 0.0)) if len(position) else NAN


def annual_turnover(traded_notional: float, equity: np.ndarray, bars_per_year: float) -> float:
    """Traded notional (both sides) per year, in multiples of the average equity."""
    years = (len(equity) - 1) / bars_per_year
    mean_equity = float(np.mean(equity))
    if years <= 0 or mean_equity <= 0:
        return NAN
    return traded_notional / mean_equity / years

