"""A portfolio book's numbers (pure): headline metrics, each coin's contribution, exposure and
turnover over time. Inputs are :class:`~candlecast.backtest.portfolio.PortfolioResult`s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest import metrics as m
from candlecast.backtest.portfolio import PortfolioResult
from candlecast.backtest.summary import curve_metrics, json_safe


def equity_with_start(result: PortfolioResult) -> np.ndarray:
    return np.concatenate([[result.initial_equity], result.equity])


def positions_opened(result: PortfolioResult) -> int:
    """How many times a coin's position left zero."""
    count = 0
    for log in result.logs.values():
        after = np.asarray(log.pos_after, dtype=float)
        before = np.concatenate([[0.0], after[:-1]])
        count += int(((before == 0.0) & (after != 0.0)).sum())
    return count


def book_metrics(result: PortfolioResult) -> dict[str, Any]:
    """Return, risk, activity and cost numbers of the book (one account)."""
    equity = equity_with_start(result)
    bpy = result.bars_per_year
    notional = sum(result.traded_notional().values())
    return json_safe({
        **curve_metrics(equity, bpy),
        "trade_count": positions_opened(result),
        "fills": int(sum(len(log) for log in result.logs.values())),
        "exposure": float(result.gross.mean()),
        "net_exposure": float(result.net.mean()),
        "annual_turnover": m.annual_turnover(notional, equity, bpy),
        "costs_paid": result.costs,
        "n_bars": len(result.equity),
    })


def coin_table(result: PortfolioResult) -> list[dict[str, Any]]:
    """Per coin: its contribution to the profit (money and share of the initial equity), the
    costs it paid, its mean weight, the share of bars held and the notional traded."""
    contributions = result.contributions()
    costs = result.coin_costs()
    notional = result.traded_notional()
    weights = result.weights
    rows = []
    for j, sym in enumerate(result.symbols):
        rows.append(json_safe({
            "symbol": sym, "contribution": contributions[sym],
            "contribution_pct": contributions[sym] / result.initial_equity,
            "costs": costs[sym]["total"], "mean_weight": float(weights[:, j].mean()),
            "held_share": float((result.positions[:, j] != 0.0).mean()),
            "traded_notional": notional[sym],
            "bars_listed_share": float(result.present[:, j].mean()),
        }))
    return rows


def exposure_frame(result: PortfolioResult) -> pd.DataFrame:
    """Per bar (close): gross and net exposure and each coin's weight."""
    frame = pd.DataFrame(result.weights, columns=list(result.symbols),
                         index=result.timestamps)
    frame.insert(0, "net", result.net)
    frame.insert(0, "gross", result.gross)
    return frame


def period_rows(result: PortfolioResult, spans: Sequence[tuple[str, pd.Timestamp,
                                                                pd.Timestamp]]
                ) -> list[dict[str, Any]]:
    """Per named span ``(name, start, end)`` (open times, inclusive): return, Sharpe, max
    drawdown, mean gross/net exposure, turnover (traded notional / mean equity) and costs."""
    equity = result.equity_series
    fills = result.fills
    rows = []
    for name, start, end in spans:
        inside = (equity.index >= start) & (equity.index <= end)
        if not inside.any():
            continue
        first = int(np.flatnonzero(inside)[0])
        base = result.equity[first - 1] if first > 0 else result.initial_equity
        curve = np.concatenate([[base], result.equity[inside]])
        part = fills[(fills["timestamp"] >= start) & (fills["timestamp"] <= end)] if len(
            fills) else fills
        notional = float((part["qty"] * part["price"]).sum()) if len(part) else 0.0
        cost = float((part["fee"] + part["slippage"]).sum()) if len(part) else 0.0
        rows.append(json_safe({
            "period": name, "start": str(start), "end": str(end),
            "return": float(curve[-1] / curve[0] - 1.0),
            "sharpe": m.sharpe_ratio(m.simple_returns(curve), result.bars_per_year),
            "max_drawdown": m.max_drawdown(curve),
            "gross": float(result.gross[inside].mean()), "net": float(result.net[inside].mean()),
            "turnover": notional / float(np.mean(curve)), "costs": cost,
        }))
    return rows
