"""The trial universe behind a chosen strategy: every configuration a researcher could have
picked (model x probability band), backtested on the same bars, for the PBO and the DSR (pure).

Selecting the best of N configurations inflates its Sharpe ratio; the deflated Sharpe ratio
needs N (and the spread of the trials' Sharpe ratios), the probability of backtest overfitting
needs their per-bar returns. Every trial runs through the vectorized backtester with the same
costs, so a trial's returns are net of fees, spread and slippage like the primary's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.inputs import Market
from candlecast.backtest.metrics import simple_returns
from candlecast.backtest.signals import probability_signal
from candlecast.backtest.summary import equity_with_start
from candlecast.backtest.vectorized import run_vectorized


@dataclass(frozen=True)
class TrialSet:
    """``returns`` is (bars x trials) per-bar net simple returns; ``names`` label the columns
    (``<model>@band=<band>``); ``sharpes`` are the per-bar Sharpe ratios of the columns."""

    names: tuple[str, ...]
    returns: np.ndarray
    sharpes: np.ndarray

    @property
    def n_trials(self) -> int:
        return len(self.names)


def trial_name(model: str, band: float) -> str:
    return f"{model}@band={band:g}"


def run_trials(
    market: Market,
    probabilities: Mapping[str, np.ndarray],
    bands: Sequence[float],
    costs: CostConfig,
    config: BacktestConfig,
) -> TrialSet:
    """Backtest every (model, band): ``probabilities[model]`` is P(up) per bar of ``market``
    (NaN where the model has no prediction: flat)."""
    if not probabilities or not bands:
        raise ValueError("the trial universe needs at least one model and one band")
    names, columns = [], []
    for model, prob in probabilities.items():
        if len(prob) != market.n:
            raise ValueError(f"{model}: {len(prob)} probabilities for {market.n} bars")
        for band in bands:
            signal = probability_signal(prob, band, config.allow_short)
            result = run_vectorized(market, signal, costs, config, name=trial_name(model, band))
            columns.append(simple_returns(equity_with_start(result)))
            names.append(result.name)
    returns = np.column_stack(columns)
    std = returns.std(axis=0, ddof=1)
    sharpes = np.divide(returns.mean(axis=0), std, out=np.zeros(len(names)), where=std > 0)
    return TrialSet(tuple(names), returns, sharpes)
