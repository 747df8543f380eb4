"""One backtest's headline numbers as a JSON-safe dict (NaN/inf become ``None``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from candlecast.backtest import metrics as m
from candlecast.backtest.overfitting import block_bootstrap, risk_of_ruin
from candlecast.backtest.result import BacktestResult


def json_safe(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, inf) become ``None``; numpy scalars become Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def equity_with_start(result: BacktestResult) -> np.ndarray:
    """The equity curve with the initial equity prepended (the state before the first bar)."""
    return np.concatenate([[result.initial_equity], result.equity])


def trade_equity_returns(result: BacktestResult) -> np.ndarray:
    """Closed trades' net PnL as a fraction of the equity just before each entry."""
    trades = result.trades
    closed = trades[trades["closed"]]
    if closed.empty:
        return np.zeros(0)
    curve = equity_with_start(result)
    before = curve[closed["entry_bar"].to_numpy(dtype=np.int64)]  # curve is shifted by one
    return closed["pnl"].to_numpy() / before


def curve_metrics(equity: np.ndarray, bars_per_year: float) -> dict[str, float]:
    """Return and risk numbers of an equity curve whose first value is the start."""
    returns = m.simple_returns(equity)
    return {
        "final_equity": float(equity[-1]),
        "total_return": m.total_return(equity),
        "annualized_return": m.annualized_return(equity, bars_per_year),
        "annualized_volatility": m.annualized_volatility(returns, bars_per_year),
        "sharpe": m.sharpe_ratio(returns, bars_per_year),
        "sortino": m.sortino_ratio(returns, bars_per_year),
        "calmar": m.calmar_ratio(equity, bars_per_year),
        "max_drawdown": m.max_drawdown(equity),
        "max_drawdown_duration_bars": m.max_drawdown_duration(equity),
    }


def summarize(
    result: BacktestResult,
    bootstrap_samples: int = 200,
    ruin_drawdown: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Performance, trade, cost and robustness metrics of one backtest."""
    bpy = result.bars_per_year
    equity = equity_with_start(result)
    returns = m.simple_returns(equity)
    trades = result.trades
    closed_pnl = trades.loc[trades["closed"], "pnl"].to_numpy()
    out: dict[str, Any] = {
        **curve_metrics(equity, bpy),
        **m.trade_statistics(closed_pnl),
        "exposure": m.exposure(result.position),
        "annual_turnover": m.annual_turnover(result.traded_notional, equity, bpy),
        "costs_paid": result.costs,
        "n_bars": len(result.equity),
    }
    if bootstrap_samples > 0 and len(returns) >= 2:
        ci = block_bootstrap(returns, n_samples=bootstrap_samples, seed=seed)
        out["bootstrap_95"] = {k: list(v) for k, v in ci.items()}
    trade_returns = trade_equity_returns(result)
    out["risk_of_ruin"] = risk_of_ruin(trade_returns, ruin_drawdown, seed=seed) if len(
        trade_returns) else math.nan
    return json_safe(out)
