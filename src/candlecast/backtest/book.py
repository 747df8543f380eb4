"""The book: several series' accounts traded side by side (equal capital each), on one time
axis, and its headline numbers (pure).

An account without a bar at a time (a gap, a coin not yet listed) counts with its last equity
there (its initial equity before its first bar): it is never given a made-up price.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest import metrics as m
from candlecast.backtest.result import BacktestResult
from candlecast.backtest.summary import curve_metrics, json_safe


def sum_curves(curves: Sequence[pd.Series], initial: Sequence[float]) -> pd.Series:
    """Equity curves (indexed by close time) summed on the union of their times; a curve
    without a bar at a time counts with its last value there (``initial`` before its first)."""
    if not curves:
        raise ValueError("a book needs at least one account")
    frame = pd.concat([c.rename(i) for i, c in enumerate(curves)], axis=1).sort_index().ffill()
    for i, start in enumerate(initial):
        frame[i] = frame[i].fillna(start)
    return frame.sum(axis=1).rename("book")


def book_curve(results: Sequence[BacktestResult]) -> pd.Series:
    """The book's equity at each close of the union of the accounts' bars (summed)."""
    return sum_curves([r.equity_series for r in results], [r.initial_equity for r in results])


def book_equity(results: Sequence[BacktestResult]) -> np.ndarray:
    """:func:`book_curve` as an array with the summed initial equity as bar 0."""
    start = sum(r.initial_equity for r in results)
    return np.concatenate([[start], book_curve(results).to_numpy()])


def book_summary(results: Sequence[BacktestResult]) -> dict[str, Any]:
    """The book's return, risk and activity numbers (the accounts' trades, costs and notional
    summed; exposure averaged)."""
    equity = book_equity(results)
    bpy = results[0].bars_per_year
    costs = {k: float(sum(r.costs[k] for r in results)) for k in results[0].costs}
    notional = sum(r.traded_notional for r in results)
    return json_safe({
        **curve_metrics(equity, bpy),
        "trade_count": int(sum(len(r.trades) for r in results)),
        "exposure": float(np.mean([m.exposure(r.position) for r in results])),
        "annual_turnover": m.annual_turnover(notional, equity, bpy),
        "costs_paid": costs,
        "n_bars": len(equity) - 1,
    })
