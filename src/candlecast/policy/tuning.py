"""Choosing a policy without fooling oneself: Optuna over :class:`PolicySearchSpace`, each
candidate backtested net of costs through the risk engine on a tuning window only.

The caller (the ``policy`` stage) passes, per series, the bars and the out-of-sample forecasts
of a window that ends before the window the chosen policy will be scored on; nothing here sees
that later window. :func:`evaluate_policy` backtests one configuration on every series with
:func:`~candlecast.backtest.targets.run_targets` (the same loop, costs and risk engine as the
reported backtest) and scores the book: the series' accounts together, equal capital each.
Every candidate is returned in the trial table: the deflated Sharpe ratio counts them and the
PBO universe backtests them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest.book import book_equity
from candlecast.backtest.config import BacktestConfig, CostConfig, ExecutionConfig
from candlecast.backtest.inputs import Market
from candlecast.backtest.metrics import calmar_ratio, max_drawdown, sharpe_ratio, simple_returns
from candlecast.backtest.targets import run_targets
from candlecast.policy.config import PolicyConfig, PolicySearchSpace, PolicyTuning
from candlecast.policy.core import Policy, PolicyDecider
from candlecast.risk import RiskConfig

#: the score of a candidate that is not eligible (too few trades); Optuna needs a number
INELIGIBLE = -1e9


@dataclass(frozen=True)
class SeriesWindow:
    """One series' bars of a window and the forecasts made at their closes, per horizon:
    ``forecasts[h] = (expected_return, volatility, prob_up)`` arrays, one value per bar (NaN
    where there is no forecast). ``atr`` feeds the risk engine's ATR stops."""

    key: str
    market: Market
    atr: np.ndarray
    forecasts: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]]

    def __post_init__(self) -> None:
        n = self.market.n
        if len(self.atr) != n:
            raise ValueError(f"{self.key}: {len(self.atr)} ATR values for {n} bars")
        for h, arrays in self.forecasts.items():
            if any(len(a) != n for a in arrays):
                raise ValueError(f"{self.key}: horizon {h} forecasts are not one per bar ({n})")


@dataclass(frozen=True)
class Evaluation:
    """One configuration on a window: the book's per-bar returns and scores, per-series
    results."""

    returns: np.ndarray
    sharpe: float
    calmar: float
    total_return: float
    max_drawdown: float
    trades_per_1000_bars: float
    results: dict[str, Any] = field(repr=False)  # BacktestResult per series, or the book


def evaluate_policy(
    config: PolicyConfig,
    windows: Sequence[SeriesWindow],
    risk: RiskConfig | None,
    costs: CostConfig,
    backtest: BacktestConfig,
    *,
    record: bool = False,
) -> Evaluation:
    """Backtest ``config`` on every series window (through the risk engine unless ``risk`` is
    None) and score the book. ``record`` keeps the target decisions in the results."""
    if not windows:
        raise ValueError("evaluate_policy needs at least one series window")
    results = {}
    bars = 0
    for window in windows:
        if config.horizon not in window.forecasts:
            raise ValueError(f"{window.key} has no forecasts for horizon {config.horizon}")
        er, vol, prob = window.forecasts[config.horizon]
        policy = Policy(config, costs, window.market.bars_per_year)
        results[window.key] = run_targets(
            window.market, PolicyDecider(policy, er, vol, prob), risk, costs, backtest,
            config.execution, atr=window.atr, name=config.label(), record_targets=record)
        bars += window.market.n
    equity = book_equity(list(results.values()))
    returns = simple_returns(equity)
    bars_per_year = windows[0].market.bars_per_year
    trades = sum(len(r.trades) for r in results.values())
    return Evaluation(
        returns=returns,
        sharpe=sharpe_ratio(returns, bars_per_year),
        calmar=calmar_ratio(equity, bars_per_year),
        total_return=float(equity[-1] / equity[0] - 1.0),
        max_drawdown=max_drawdown(equity),
        trades_per_1000_bars=1000.0 * trades / bars if bars else 0.0,
        results=results,
    )


def score(evaluation: Evaluation, tuning: PolicyTuning) -> float:
    """The search objective, or :data:`INELIGIBLE` below the minimum trade count."""
    if evaluation.trades_per_1000_bars < tuning.min_trades_per_1000_bars:
        return INELIGIBLE
    value = evaluation.sharpe if tuning.objective == "sharpe" else evaluation.calmar
    return value if math.isfinite(value) else INELIGIBLE


def suggest_config(trial: Any, space: PolicySearchSpace, base: PolicyConfig) -> PolicyConfig:
    """A candidate from an Optuna trial (define-by-run: limit-order settings only when a
    limit style is drawn); fields outside the space come from ``base``."""
    horizon = int(trial.suggest_categorical("horizon", list(space.horizons)))
    entry = trial.suggest_float("entry_margin", *space.entry_margin, log=True)
    exit_share = trial.suggest_float("exit_share", *space.exit_share)
    hold_share = trial.suggest_float("hold_share", *space.hold_share)
    entry_style = trial.suggest_categorical("entry_style", list(space.entry_styles))
    exit_style = trial.suggest_categorical("exit_style", list(space.exit_styles))
    execution: dict[str, Any] = {"entry": entry_style, "exit": exit_style}
    if "limit" in (entry_style, exit_style):
        execution.update(
            limit_offset_bps=trial.suggest_categorical("limit_offset_bps",
                                                       list(space.limit_offsets_bps)),
            expire_bars=trial.suggest_categorical("expire_bars", list(space.expire_bars)),
            on_expire=trial.suggest_categorical("on_expire", list(space.on_expire)),
        )
    return base.model_copy(update={
        "horizon": horizon,
        "entry_margin": entry,
        "exit_margin": exit_share * entry,
        "min_hold_bars": int(round(hold_share * horizon)),
        "vol_target": trial.suggest_categorical("vol_target", list(space.vol_targets)),
        "allow_short": trial.suggest_categorical("allow_short", list(space.allow_short)),
        "execution": ExecutionConfig(**execution),
    })


@dataclass(frozen=True)
class TuningResult:
    """The chosen configuration (None: stay flat, nothing eligible paid), its tuning score and
    every candidate tried (``number, label, score, sharpe, calmar, total_return,
    max_drawdown, trades_per_1000_bars, eligible, config``)."""

    chosen: Any
    best_score: float
    trials: pd.DataFrame
    reason: str


def run_search(
    suggest: Callable[[Any], Any],
    evaluate: Callable[[Any], Evaluation],
    parse: Callable[[str], Any],
    tuning: PolicyTuning,
    *,
    study_name: str,
    storage: str | None = None,
    seed_offset: int = 0,
) -> TuningResult:
    """Optuna (TPE, seeded) over configurations drawn by ``suggest(trial)`` (anything with
    ``label()`` and ``model_dump_json()``), each scored by :func:`score` of ``evaluate``; the
    best eligible candidate, or None (flat) when none is eligible or, with
    ``tuning.flat_unless_positive``, the best lost money. ``parse`` reads a configuration back
    from its JSON. The one search of the policy and the portfolio stages."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        config = suggest(trial)
        evaluation = evaluate(config)
        value = score(evaluation, tuning)
        rows.append({
            "number": trial.number, "label": config.label(), "score": value,
            "sharpe": evaluation.sharpe, "calmar": evaluation.calmar,
            "total_return": evaluation.total_return, "max_drawdown": evaluation.max_drawdown,
            "trades_per_1000_bars": evaluation.trades_per_1000_bars,
            "eligible": value > INELIGIBLE, "config": config.model_dump_json(),
        })
        return value

    sampler = optuna.samplers.TPESampler(seed=tuning.seed + seed_offset)
    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=study_name,
                                storage=storage, load_if_exists=False)
    study.optimize(objective, n_trials=tuning.n_trials)
    trials = pd.DataFrame(rows)
    eligible = trials[trials["eligible"]]
    if eligible.empty:
        return TuningResult(None, INELIGIBLE, trials,
                            f"no candidate reached {tuning.min_trades_per_1000_bars} trades "
                            "per series and 1,000 bars: flat")
    best = eligible.loc[eligible["score"].idxmax()]
    chosen = parse(best["config"])
    if tuning.flat_unless_positive and not best["total_return"] > 0:
        return TuningResult(None, float(best["score"]), trials,
                            f"the best candidate ({best['label']}) lost "
                            f"{-best['total_return']:.2%} over the tuning window: flat")
    return TuningResult(chosen, float(best["score"]), trials,
                        f"best of {len(trials)} by {tuning.objective}: {best['label']} "
                        f"({tuning.objective} {best['score']:.2f})")


def tune_policy(
    windows: Sequence[SeriesWindow],
    space: PolicySearchSpace,
    tuning: PolicyTuning,
    base: PolicyConfig,
    risk: RiskConfig | None,
    costs: CostConfig,
    backtest: BacktestConfig,
    *,
    study_name: str = "policy",
    storage: str | None = None,
    seed_offset: int = 0,
) -> TuningResult:
    """Search ``space`` with ``tuning.n_trials`` Optuna trials on ``windows`` (see the module
    docstring and :func:`run_search`)."""
    return run_search(
        lambda trial: suggest_config(trial, space, base),
        lambda config: evaluate_policy(config, windows, risk, costs, backtest),
        PolicyConfig.model_validate_json, tuning, study_name=study_name, storage=storage,
        seed_offset=seed_offset)
