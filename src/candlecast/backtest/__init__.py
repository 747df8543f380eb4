"""Cost-aware backtesting: a vectorized path for plain signals, an event-driven path through
the risk engine, one cost model, metrics that do not flatter, and the report builder."""

from candlecast.backtest.baselines import buy_and_hold, sma_crossover_signal
from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.event import run_event_driven
from candlecast.backtest.inputs import Market, prepare_market
from candlecast.backtest.report import BacktestReport, Lineage, build_report, write_report
from candlecast.backtest.result import BacktestResult
from candlecast.backtest.summary import summarize
from candlecast.backtest.vectorized import run_vectorized

__all__ = [
    "BacktestConfig",
    "BacktestReport",
    "BacktestResult",
    "CostConfig",
    "CostModel",
    "Lineage",
    "Market",
    "build_report",
    "buy_and_hold",
    "prepare_market",
    "run_event_driven",
    "run_vectorized",
    "sma_crossover_signal",
    "summarize",
    "write_report",
]
