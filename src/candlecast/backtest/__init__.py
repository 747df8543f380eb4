"""Cost-aware backtesting: a vectorized path for plain signals, an event-driven path through
the risk engine, one cost model, metrics that do not flatter, and the report builder.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so `from candlecast.<pkg>.config import X` stays light.
_LAZY: dict[str, tuple[str, str]] = {
    "BacktestConfig": ("candlecast.backtest.config", "BacktestConfig"),
    "BacktestReport": ("candlecast.backtest.report", "BacktestReport"),
    "BacktestResult": ("candlecast.backtest.result", "BacktestResult"),
    "CostConfig": ("candlecast.backtest.config", "CostConfig"),
    "CostModel": ("candlecast.backtest.costs", "CostModel"),
    "Lineage": ("candlecast.backtest.report", "Lineage"),
    "Market": ("candlecast.backtest.inputs", "Market"),
    "build_report": ("candlecast.backtest.report", "build_report"),
    "buy_and_hold": ("candlecast.backtest.baselines", "buy_and_hold"),
    "prepare_market": ("candlecast.backtest.inputs", "prepare_market"),
    "run_event_driven": ("candlecast.backtest.event", "run_event_driven"),
    "run_vectorized": ("candlecast.backtest.vectorized", "run_vectorized"),
    "sma_crossover_signal": ("candlecast.backtest.baselines", "sma_crossover_signal"),
    "summarize": ("candlecast.backtest.summary", "summarize"),
    "write_report": ("candlecast.backtest.report", "write_report"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
