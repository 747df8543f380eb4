"""Choosing the portfolio's configuration without fooling oneself: the policy search
(:func:`candlecast.policy.tuning.run_search`: Optuna, the same scoring and eligibility) over
:class:`PortfolioSearchSpace`, each candidate backtested as one book through the risk engine
and the full cost model on a tuning window only (folds before the one it will trade).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from candlecast.backtest.config import BacktestConfig, CostConfig, ExecutionConfig
from candlecast.backtest.metrics import calmar_ratio, max_drawdown, sharpe_ratio, simple_returns
from candlecast.backtest.portfolio import PortfolioResult, run_portfolio
from candlecast.backtest.portfolio_summary import positions_opened
from candlecast.policy.config import PolicyTuning
from candlecast.policy.tuning import Evaluation, TuningResult, run_search
from candlecast.portfolio.config import PortfolioConfig, PortfolioSearchSpace
from candlecast.portfolio.construct import PortfolioConstructor
from candlecast.portfolio.deciders import BookWindow, ConstructorDecider
from candlecast.risk import RiskConfig


def book_evaluation(result: PortfolioResult) -> Evaluation:
    """A book's scores: per-bar returns, Sharpe, Calmar, return, drawdown, positions opened
    per coin and 1,000 bars."""
    equity = np.concatenate([[result.initial_equity], result.equity])
    returns = simple_returns(equity)
    bpy = result.bars_per_year
    cells = len(result.equity) * len(result.symbols)
    return Evaluation(
        returns=returns, sharpe=sharpe_ratio(returns, bpy), calmar=calmar_ratio(equity, bpy),
        total_return=float(equity[-1] / equity[0] - 1.0), max_drawdown=max_drawdown(equity),
        trades_per_1000_bars=1000.0 * positions_opened(result) / cells if cells else 0.0,
        results={"book": result})


def evaluate_book(config: PortfolioConfig, window: BookWindow, risk: RiskConfig | None,
                  costs: CostConfig, backtest: BacktestConfig, *, record: bool = False
                  ) -> Evaluation:
    """Backtest ``config`` on ``window`` as one account and score it."""
    bpy = next(iter(window.markets.values())).bars_per_year
    constructor = PortfolioConstructor(config, costs, bpy)
    result = run_portfolio(window.markets, ConstructorDecider(constructor, window.panel), risk,
                           costs, backtest, config.execution, atr=window.atr,
                           name=config.label(), record_targets=record)
    return book_evaluation(result)


def suggest_config(trial: Any, space: PortfolioSearchSpace, base: PortfolioConfig
                   ) -> PortfolioConfig:
    """A candidate from an Optuna trial; fields outside the space come from ``base``."""
    return base.model_copy(update={
        "horizon": int(trial.suggest_categorical("horizon", list(space.horizons))),
        "mode": trial.suggest_categorical("mode", list(space.modes)),
        "top_k": int(trial.suggest_categorical("top_k", list(space.top_k))),
        "buffer": int(trial.suggest_categorical("buffer", list(space.buffer))),
        "weighting": trial.suggest_categorical("weighting", list(space.weighting)),
        "rebalance_every": int(trial.suggest_categorical("rebalance_every",
                                                         list(space.rebalance_every))),
        "cost_margin": trial.suggest_float("cost_margin", *space.cost_margin),
        "execution": ExecutionConfig(
            entry=trial.suggest_categorical("entry_style", list(space.entry_styles)),
            exit=trial.suggest_categorical("exit_style", list(space.exit_styles))),
    })


def tune_book(window: BookWindow, space: PortfolioSearchSpace, tuning: PolicyTuning,
              base: PortfolioConfig, risk: RiskConfig | None, costs: CostConfig,
              backtest: BacktestConfig, *, study_name: str = "portfolio",
              seed_offset: int = 0) -> TuningResult:
    """Search ``space`` with ``tuning.n_trials`` trials on ``window`` (every candidate is in
    the result's trial table: the deflated Sharpe counts them, the PBO universe replays them)."""
    return run_search(
        lambda trial: suggest_config(trial, space, base),
        lambda config: evaluate_book(config, window, risk, costs, backtest),
        PortfolioConfig.model_validate_json, tuning, study_name=study_name,
        seed_offset=seed_offset)
