"""`backtest` stage: the walk-forward policy on the ensemble's out-of-sample forecasts, through
the risk engine with the full cost model, beside buy-and-hold and the rule baselines; the
deflated Sharpe ratio and the PBO over every configuration tried.

Every scored fold (the ``policy`` stage's ``folds.json``) is traded with the policy chosen on
the folds before it, in one account per series (positions carry across fold boundaries); the
series' accounts together are the book. Beside it, on the same bars, costs and risk engine:
buy-and-hold (no risk engine: the classic reference), volatility-targeted buy-and-hold, SMA
crossover, Donchian breakout and time-series momentum (:mod:`candlecast.backtest.rules`).

The trial universe -- every configuration any policy search tried, on the ensemble's and the
simple average's forecasts -- is backtested on the same bars for the PBO and the spread of
Sharpe ratios that deflates the policy's; the number of trials counts every search candidate,
the universe, the rule baselines and the LightGBM tuning trials.

Outputs: ``metrics/backtest/<strategy>.json`` (the book's headline numbers, one small file per
strategy, so ``dvc metrics show --md metrics/backtest`` is a readable table),
``metrics/backtest/overfitting.json``, ``metrics/backtest/policy_fold<k>.json`` (the policy per
scored fold), ``plots/backtest/{equity,
drawdown}.csv`` (the book per strategy), ``reports/backtest/summary.json`` (everything, per
series too, for ``candlecast report``) and ``reports/backtest/<series>/`` (HTML report, trades,
decisions, per-series metrics); the PNGs and reports go to the ensemble's MLflow run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from candlecast.backtest import BacktestResult, Lineage, build_report, buy_and_hold, write_report
from candlecast.backtest.book import book_curve, book_equity, book_summary, sum_curves
from candlecast.backtest.metrics import drawdown_curve, simple_returns
from candlecast.backtest.overfitting import (
    deflated_sharpe_ratio,
    per_period_sharpes,
    probability_of_backtest_overfitting,
)
from candlecast.backtest.rules import rule_targets
from candlecast.backtest.summary import equity_with_start, json_safe
from candlecast.backtest.targets import TargetSeries, run_targets
from candlecast.config import Params
from candlecast.data.store import CandleStore
from candlecast.pipeline.decision_inputs import SeriesForecasts
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.policy_stage import ensemble_forecasts, policy_dir, series_forecasts
from candlecast.pipeline.scoring import trade_forecasts
from candlecast.pipeline.zoo_common import ZooPaths, fresh_dir, write_json
from candlecast.policy import Policy, PolicyConfig, PolicyDecider
from candlecast.tracking import configure_mlflow, git_commit

log = logging.getLogger(__name__)
POLICY = "policy"
BUY_AND_HOLD = "buy_and_hold"
RULES: tuple[str, ...] = ("vol_target_hold", "sma_crossover", "donchian", "tsmom")
STRATEGIES: tuple[str, ...] = (POLICY, BUY_AND_HOLD, *RULES)
#: the headline numbers per strategy in metrics/backtest/<strategy>.json
HEADLINE = ("total_return", "sharpe", "calmar", "max_drawdown", "trade_count", "exposure",
            "annual_turnover")
PBO_BLOCKS = 16


def fold_policies(root: Path) -> dict[int, PolicyConfig | None]:
    """The policy chosen for each scored fold (None: flat)."""
    path = policy_dir(root) / "folds.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the policy stage first")
    return {int(k): None if v["flat"] else PolicyConfig.model_validate(v["policy"])
            for k, v in json.loads(path.read_text()).items()}


def tried_configs(root: Path) -> tuple[list[PolicyConfig], int]:
    """Every distinct configuration the policy searches tried, and how many candidates they
    evaluated in all (repeats included)."""
    path = policy_dir(root) / "trials.csv"
    trials = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if trials.empty or "config" not in trials.columns:
        return [], 0
    distinct = trials.drop_duplicates("label")
    return [PolicyConfig.model_validate_json(c) for c in distinct["config"]], len(trials)


def _rule_results(params: Params, store: CandleStore, series: SeriesForecasts, rows: np.ndarray,
                  market: Any, atr: np.ndarray) -> list[BacktestResult]:
    """The rule baselines on ``market``'s bars, decided on the full history before them."""
    history = store.read(series.series)
    close_time = history["timestamp"] + series.series.step
    vol = (pd.Series(series.forecasts[min(series.forecasts)][1][rows],
                     index=pd.DatetimeIndex(market.timestamps + series.series.step)))
    targets = rule_targets(history["high"].to_numpy(), history["low"].to_numpy(),
                           history["close"].to_numpy(),
                           vol.reindex(close_time).to_numpy(dtype=float),
                           params.backtest.rules, market.bars_per_year)
    at = pd.Index(history["timestamp"]).get_indexer(market.timestamps)
    if (at < 0).any():
        raise ValueError(f"{series.key}: backtest bars missing from the candle store")
    out = []
    for name in RULES:
        decider = TargetSeries(np.clip(targets[name][at], -1.0, 1.0),
                               params.backtest.rules.min_change, reason=name)
        out.append(run_targets(market, decider, params.risk, params.costs, params.backtest.run,
                               atr=atr, name=name))
    return out


def _universe(params: Params, configs: list[PolicyConfig], market: Any, atr: np.ndarray,
              forecasts: dict[str, dict[int, tuple[np.ndarray, ...]]]) -> dict[str, np.ndarray]:
    """Equity per bar of every (model, configuration) of the trial universe on ``market``."""
    curves = {}
    for model, by_horizon in forecasts.items():
        for config in configs:
            er, vol, prob = by_horizon[config.horizon]
            policy = Policy(config, params.costs, market.bars_per_year)
            result = run_targets(market, PolicyDecider(policy, er, vol, prob), params.risk,
                                 params.costs, params.backtest.run, config.execution, atr=atr,
                                 record_targets=False)
            curves[f"{model}:{config.label()}"] = result.equity
    return curves


def n_trials(params: Params, candidates: int, universe: int) -> int:
    """Configurations tried: ``backtest.n_trials`` if set, else every policy-search candidate,
    the PBO universe, the rule baselines, the LightGBM Optuna trials (each a configuration
    chosen among) and the declared ``backtest.prior_trials`` of earlier design iterations."""
    if params.backtest.n_trials is not None:
        return params.backtest.n_trials
    tuning = params.models.lightgbm.tuning
    tuned = tuning.n_trials if "lightgbm" in params.models.run and tuning.enabled else 0
    return max(1, candidates + universe + len(RULES) + max(tuned - 1, 0)
               + params.backtest.prior_trials)


def run_backtest(params: Params, paths: Paths) -> dict[str, object]:
    rows, folds = ensemble_forecasts(params, paths)
    policies = fold_policies(paths.root)
    scored = sorted(policies)
    inputs = series_forecasts(params, paths, rows)
    oof = pd.read_parquet(ZooPaths(paths.root).ensemble_dir / "oof.parquet")
    average = series_forecasts(params, paths, oof[oof["model"] == "simple_average"])
    configs, candidates = tried_configs(paths.root)
    store = CandleStore(paths.validated)
    run_info = _model_run(paths, params.backtest.run_info)
    lineage = Lineage(
        data_version=run_info.get("data_version", "unknown"),
        git_commit=git_commit(paths.root),
        model_run_id=run_info.get("mlflow_run_id", "unknown"),
        params={"params_hash": params.hash(), "backtest": params.backtest.model_dump(mode="json"),
                "policy": params.policy.model_dump(mode="json")},
    )
    out_root = fresh_dir(paths.root / "reports" / "backtest")
    by_strategy: dict[str, list[BacktestResult]] = {name: [] for name in STRATEGIES}
    universe: dict[str, list[pd.Series]] = {}
    per_series: dict[str, Any] = {}
    _, traded = trade_forecasts(params, paths, rows, policies, POLICY, inputs)
    for series, simple in zip(inputs, average, strict=True):
        idx = series.rows(scored)
        market = series.market(idx)
        atr = series.features["atr"].to_numpy(dtype=float)[idx]
        forecasts = {h: tuple(a[idx] for a in arrays) for h, arrays in series.forecasts.items()}
        policy = traded[series.key]
        results = [policy, buy_and_hold(market, params.costs, params.backtest.run),
                   *_rule_results(params, store, series, idx, market, atr)]
        for result in results:
            by_strategy[result.name].append(result)
        curves = _universe(params, configs, market, atr, {
            "ensemble": forecasts,
            "simple_average": {h: tuple(a[idx] for a in arrays)
                               for h, arrays in simple.forecasts.items()},
        })
        for name, equity in curves.items():
            universe.setdefault(name, []).append(pd.Series(equity, index=market.timestamps))
        trial_returns = (np.column_stack([simple_returns(np.concatenate(
            [[params.backtest.run.initial_equity], e])) for e in curves.values()])
            if len(curves) >= 2 else None)
        sharpes = per_period_sharpes(trial_returns)
        report = build_report(
            results, lineage, n_trials=n_trials(params, candidates, len(curves)),
            title=f"{series.key}: walk-forward policy vs baselines (net of costs)",
            trial_sharpes=sharpes, trial_returns=trial_returns, pbo_blocks=PBO_BLOCKS)
        folder = out_root / series.key.replace("/", "-").replace(":", "_")
        write_report(report, folder)
        policy.decisions.to_csv(folder / "decisions.csv", index=False)
        per_series[series.key] = {
            name: {k: values.get(k) for k in (*HEADLINE, "costs_paid")}
            for name, values in report.metrics["strategies"].items()
        } | {"overfitting": report.metrics["overfitting"]}
    books = {name: book_summary(results) for name, results in by_strategy.items()}
    overfitting = _book_overfitting(params, by_strategy[POLICY], universe, candidates)
    fold_rows = _fold_rows(by_strategy, inputs, scored, policies)
    _write_outputs(paths, books, overfitting, fold_rows, by_strategy)
    summary = json_safe({
        "strategies": list(STRATEGIES), "book": books, "series": per_series,
        "overfitting": overfitting, "folds": fold_rows,
        "window": {"start": str(by_strategy[POLICY][0].timestamps[0]),
                   "end": str(by_strategy[POLICY][0].timestamps[-1]), "scored_folds": scored},
    })
    write_json(out_root / "summary.json", summary)
    _log_to_mlflow(params, paths, run_info, out_root)
    log.info("backtest book: policy %s | buy-and-hold %s", books[POLICY], books[BUY_AND_HOLD])
    return {"book": {k: {m: v.get(m) for m in HEADLINE} for k, v in books.items()},
            "overfitting": overfitting}


def _book_overfitting(params: Params, policy: list[BacktestResult],
                      universe: dict[str, list[pd.Series]], candidates: int
                      ) -> dict[str, Any]:
    """The deflated Sharpe of the policy's book over ``n_trials`` and the PBO (CSCV) of the
    universe's books."""
    returns = simple_returns(book_equity(policy))
    start = params.backtest.run.initial_equity
    matrix = None
    if len(universe) >= 2:
        books = [sum_curves(curves, [start] * len(curves)).to_numpy()
                 for curves in universe.values()]
        matrix = np.column_stack([simple_returns(np.concatenate([[start * len(policy)], b]))
                                  for b in books])
    trials = n_trials(params, candidates, len(universe))
    out: dict[str, Any] = {"n_trials": trials, "universe": len(universe),
                           "search_candidates": candidates}
    if len(returns) >= 3 and np.std(returns) > 0:
        out["deflated_sharpe"] = deflated_sharpe_ratio(returns, trials,
                                                       trial_sharpes=per_period_sharpes(matrix))
    else:
        out["deflated_sharpe"] = {"dsr": None, "note": "the policy never traded"}
    if matrix is not None:
        pbo = probability_of_backtest_overfitting(matrix, PBO_BLOCKS)
        out["pbo"], out["pbo_splits"] = pbo["pbo"], pbo["n_splits"]
    return out


def _fold_rows(by_strategy: dict[str, list[BacktestResult]], inputs: list[SeriesForecasts],
               scored: list[int], policies: dict[int, PolicyConfig | None]) -> list[dict]:
    """Per scored fold: the policy used and every strategy's book return and Sharpe there."""
    from candlecast.backtest.metrics import max_drawdown, sharpe_ratio

    rows = []
    curves = {name: book_curve(results) for name, results in by_strategy.items()}
    for fold in scored:
        times = [s.market(s.rows([fold])).timestamps for s in inputs]
        start, end = min(t[0] for t in times), max(t[-1] for t in times)
        row: dict[str, Any] = {"fold": fold, "start": str(start), "end": str(end),
                               "policy": "flat" if policies[fold] is None
                               else policies[fold].label()}
        for name, curve in curves.items():
            before = curve[curve.index < start]
            base = before.iloc[-1] if len(before) else curve.iloc[0]
            part = curve[(curve.index >= start) & (curve.index <= end)].to_numpy()
            equity = np.concatenate([[base], part])
            row[f"{name}.return"] = float(equity[-1] / equity[0] - 1.0)
            row[f"{name}.sharpe"] = sharpe_ratio(simple_returns(equity),
                                                 by_strategy[name][0].bars_per_year)
            row[f"{name}.max_drawdown"] = max_drawdown(equity)
        rows.append(row)
    return rows


def _write_outputs(paths: Paths, books: dict[str, dict[str, Any]], overfitting: dict[str, Any],
                   folds: list[dict], by_strategy: dict[str, list[BacktestResult]]) -> None:
    metrics = paths.metrics / "backtest"
    if metrics.exists():
        for old in metrics.glob("*.json"):
            old.unlink()
    metrics.mkdir(parents=True, exist_ok=True)
    for name, values in books.items():
        headline = {k: values.get(k) for k in HEADLINE}
        headline["costs_paid"] = values["costs_paid"]["total"]
        write_json(metrics / f"{name}.json", json_safe(headline))
    dsr = overfitting.get("deflated_sharpe", {})
    write_json(metrics / "overfitting.json", json_safe({
        "n_trials": overfitting["n_trials"], "universe": overfitting["universe"],
        "dsr": dsr.get("dsr"), "pbo": overfitting.get("pbo")}))
    for r in folds:  # the policy per scored fold, under the strategy files' key names
        write_json(metrics / f"policy_fold{r['fold']}.json", json_safe({
            "total_return": r["policy.return"], "sharpe": r["policy.sharpe"],
            "max_drawdown": r["policy.max_drawdown"],
            "buy_and_hold_return": r["buy_and_hold.return"]}))
    book = book_curve(by_strategy[POLICY])
    pd.DataFrame({"timestamp": book.index, "equity": book.to_numpy()}).to_parquet(
        paths.root / "reports" / "backtest" / "policy_book.parquet", index=False)
    plots = paths.plots / "backtest"
    plots.mkdir(parents=True, exist_ok=True)
    curves = pd.DataFrame({name: book_curve(results) for name, results in by_strategy.items()})
    curves = curves.ffill()
    step = max(1, len(curves) // 2000)  # a readable plot: at most ~2,000 points
    sampled = curves.iloc[::step]
    sampled.reset_index(drop=True).rename_axis("step").to_csv(plots / "equity.csv")
    drawdown = pd.DataFrame({c: drawdown_curve(curves[c].to_numpy()) for c in curves},
                            index=curves.index).iloc[::step]
    drawdown.reset_index(drop=True).rename_axis("step").to_csv(plots / "drawdown.csv")


def _model_run(paths: Paths, run_info: str) -> dict:
    path = paths.root / run_info
    return json.loads(path.read_text()) if path.exists() else {}


def _log_to_mlflow(params: Params, paths: Paths, run_info: dict, out_root: Path) -> None:
    run_id = run_info.get("mlflow_run_id")
    if not run_id:
        return
    configure_mlflow(params.mlflow.tracking_uri, params.mlflow.artifact_root,
                     params.mlflow.experiment, paths.root)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifact(str(out_root / "summary.json"), "backtest")
        for folder in sorted(p for p in out_root.iterdir() if p.is_dir()):
            for name in ("equity_drawdown.png", "trades.csv", "report.html", "metrics.json"):
                if (folder / name).exists():
                    mlflow.log_artifact(str(folder / name), f"backtest/{folder.name}")


__all__ = ["equity_with_start", "run_backtest"]
