"""`portfolio-backtest` stage: the walk-forward book on the pooled ensemble's out-of-sample
forecasts, one account through the risk engine with the full cost model, beside the
equal-weight basket, the same basket vol-targeted, BTC buy-and-hold and a momentum-rank book;
the deflated Sharpe ratio and the PBO over every configuration tried.

Every scored fold (the ``portfolio`` stage's ``folds.json``) is traded with the configuration
chosen on the folds before it; positions carry across fold boundaries as in one account. The
baselines are fixed up front (``portfolio.baselines``) and built with the SAME constructor
(the basket: every coin, equal weights; momentum: the top coins by their past return), the
passive references (the basket, BTC) without the risk engine like the policy's
buy-and-hold. The trial universe -- every distinct configuration any search tried, on the
ensemble's forecasts -- is backtested on the same bars for the PBO and the spread of Sharpe
ratios that deflates the portfolio's.

Outputs: ``metrics/portfolio/<strategy>.json``, ``overfitting.json``, ``folds.json``;
``plots/portfolio/{equity,drawdown,exposure}.csv``; ``reports/portfolio/`` (``summary.json``
for ``candlecast report``, fills, decisions, ``portfolio.png``, ``exposure.png``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest.metrics import drawdown_curve, simple_returns
from candlecast.backtest.overfitting import (
    deflated_sharpe_ratio,
    per_period_sharpes,
    probability_of_backtest_overfitting,
)
from candlecast.backtest.plots import exposure_png, report_png
from candlecast.backtest.portfolio import PortfolioResult, TargetWeights, run_portfolio
from candlecast.backtest.portfolio_summary import (
    book_metrics,
    coin_table,
    equity_with_start,
    exposure_frame,
    period_rows,
)
from candlecast.backtest.summary import json_safe
from candlecast.config import Params
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.portfolio_inputs import BookInputs, load_book_inputs
from candlecast.pipeline.portfolio_stage import portfolio_dir
from candlecast.pipeline.zoo_common import write_json
from candlecast.portfolio import PortfolioConfig, PortfolioConstructor
from candlecast.portfolio.deciders import BookWindow, ConstructorDecider, FoldedBookDecider

log = logging.getLogger(__name__)
PORTFOLIO = "portfolio"
BASELINES: tuple[str, ...] = ("equal_weight", "vol_target_basket", "btc_hold", "momentum_rank")
STRATEGIES: tuple[str, ...] = (PORTFOLIO, *BASELINES)
HEADLINE = ("total_return", "sharpe", "calmar", "max_drawdown", "trade_count", "exposure",
            "net_exposure", "annual_turnover")
PBO_BLOCKS = 16


def fold_configs(root: Path) -> dict[int, PortfolioConfig | None]:
    path = portfolio_dir(root) / "folds.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the portfolio stage first")
    return {int(k): None if v["flat"] else PortfolioConfig.model_validate(v["portfolio"])
            for k, v in json.loads(path.read_text()).items()}


def tried_configs(root: Path) -> tuple[list[PortfolioConfig], int]:
    trials = pd.read_csv(portfolio_dir(root) / "trials.csv")
    distinct = trials.drop_duplicates("label")
    return [PortfolioConfig.model_validate_json(c) for c in distinct["config"]], len(trials)


def _segment(inputs: BookInputs, window: BookWindow, scored: list[int]) -> np.ndarray:
    """Per axis bar of the window: the index in ``scored`` of its fold (bars between folds
    take the fold before)."""
    start = int(np.searchsorted(inputs.ts_ns, window.panel.ts_ns[0]))
    fold = pd.Series(inputs.fold[start:start + len(window.panel.ts_ns)]).replace(-1, np.nan)
    return np.searchsorted(scored, fold.ffill().bfill().to_numpy(dtype=int))


def baseline_configs(params: Params) -> dict[str, PortfolioConfig]:
    """The baselines as constructor settings (fixed up front, never tuned)."""
    b, n = params.portfolio.baselines, len(params.ingest.symbols)
    basket = PortfolioConfig(top_k=n, buffer=0, weighting="equal", max_weight=1.0,
                             rebalance_every=b.rebalance_every, min_trade=b.min_change,
                             cost_margin=0.0, horizon=params.portfolio.default.horizon)
    momentum = params.portfolio.default.model_copy(update={
        "mode": "long_only", "top_k": b.momentum_top_k, "buffer": b.momentum_buffer,
        "weighting": "equal", "rebalance_every": b.rebalance_every, "cost_margin": 0.0,
        "min_hold_bars": 0, "max_replacements": None})
    return {"equal_weight": basket,
            "vol_target_basket": basket.model_copy(update={"vol_target": b.vol_target}),
            "momentum_rank": momentum}


def _constructor(params: Params, config: PortfolioConfig, window: BookWindow
                 ) -> PortfolioConstructor:
    return PortfolioConstructor(config, params.costs,
                                next(iter(window.markets.values())).bars_per_year)


def baseline_books(params: Params, inputs: BookInputs, window: BookWindow, scored: list[int]
                   ) -> list[PortfolioResult]:
    configs = baseline_configs(params)
    panel = window.panel
    h = params.portfolio.default.horizon
    present = np.isfinite(panel.volatility)
    flat_scores = panel.with_scores(h, np.where(present, 0.0, np.nan))
    start, stop = inputs.span(scored)
    momentum = panel.with_scores(h, inputs.momentum[start:stop])
    run = params.backtest.run
    out = []
    for name, scores, risk in (("equal_weight", flat_scores, None),
                               ("vol_target_basket", flat_scores, params.risk),
                               ("momentum_rank", momentum, params.risk)):
        decider = ConstructorDecider(_constructor(params, configs[name], window), scores)
        out.append(run_portfolio(window.markets, decider, risk, params.costs, run,
                                 atr=window.atr, name=name))
    hold = np.zeros((len(panel.ts_ns), len(panel.symbols)))
    hold[:, panel.symbols.index(params.portfolio.baselines.hold_symbol)] = 1.0
    out.append(run_portfolio(window.markets, TargetWeights(panel.symbols, hold), None,
                             params.costs, run, name="btc_hold"))
    order = {name: i for i, name in enumerate(BASELINES)}
    return sorted(out, key=lambda r: order[r.name])


def universe_curves(params: Params, configs: list[PortfolioConfig], scored: list[int],
                    inputs: BookInputs) -> dict[str, np.ndarray]:
    """Equity per bar of every distinct configuration any search tried, on the scored window
    (the ensemble's forecasts: what the searches chose among)."""
    curves = {}
    window = inputs.window(scored)
    for config in configs:
        decider = ConstructorDecider(_constructor(params, config, window), window.panel)
        result = run_portfolio(window.markets, decider, params.risk, params.costs,
                               params.backtest.run, config.execution, atr=window.atr,
                               record_targets=False)
        curves[config.label()] = equity_with_start(result)
    return curves


def n_trials(params: Params, candidates: int, universe: int) -> int:
    """Configurations tried: every search candidate, the PBO universe, the baselines, the
    LightGBM Optuna trials and the declared ``portfolio.prior_trials``."""
    tuning = params.models.lightgbm.tuning
    tuned = tuning.n_trials if "lightgbm" in params.models.run and tuning.enabled else 0
    return max(1, candidates + universe + len(BASELINES) + max(tuned - 1, 0)
               + params.portfolio.prior_trials)


def overfitting(params: Params, book: PortfolioResult, curves: dict[str, np.ndarray],
                candidates: int) -> dict[str, Any]:
    returns = simple_returns(equity_with_start(book))
    matrix = (np.column_stack([simple_returns(c) for c in curves.values()])
              if len(curves) >= 2 else None)
    trials = n_trials(params, candidates, len(curves))
    out: dict[str, Any] = {"n_trials": trials, "universe": len(curves),
                           "search_candidates": candidates}
    if len(returns) >= 3 and np.std(returns) > 0:
        out["deflated_sharpe"] = deflated_sharpe_ratio(
            returns, trials, trial_sharpes=per_period_sharpes(matrix))
    else:
        out["deflated_sharpe"] = {"dsr": None, "note": "the portfolio never traded"}
    if matrix is not None and len(matrix) >= PBO_BLOCKS:
        pbo = probability_of_backtest_overfitting(matrix, PBO_BLOCKS)
        out["pbo"], out["pbo_splits"] = pbo["pbo"], pbo["n_splits"]
    return out


def run_portfolio_backtest(params: Params, paths: Paths) -> dict[str, object]:
    inputs = load_book_inputs(params, paths)
    chosen = fold_configs(paths.root)
    scored = sorted(chosen)
    window = inputs.window(scored)
    constructors = [None if (c := chosen[f]) is None else _constructor(params, c, window)
                    for f in scored]
    decider = FoldedBookDecider(constructors, _segment(inputs, window, scored), window.panel)
    book = run_portfolio(window.markets, decider, params.risk, params.costs,
                         params.backtest.run, atr=window.atr, name=PORTFOLIO)
    books = [book, *baseline_books(params, inputs, window, scored)]
    configs, candidates = tried_configs(paths.root)
    curves = universe_curves(params, configs, scored, inputs)
    over = overfitting(params, book, curves, candidates)
    ranking = json.loads((paths.root / "reports" / "portfolio" / "ranking.json").read_text())
    folds = _fold_rows(books, inputs, scored, chosen, ranking, params)
    summary = json_safe({
        "strategies": list(STRATEGIES), "book": {r.name: book_metrics(r) for r in books},
        "coins": coin_table(book), "folds": folds, "overfitting": over,
        "ranking": {k: v["pooled"] for k, v in ranking.items()},
        "universe": list(inputs.symbols),
        "window": {"start": str(book.timestamps[0]), "end": str(book.timestamps[-1]),
                   "scored_folds": scored},
        "baselines": {k: v.label() for k, v in baseline_configs(params).items()},
    })
    _write_outputs(paths, summary, books)
    log.info("portfolio book: %s | equal weight: %s", summary["book"][PORTFOLIO]["sharpe"],
             summary["book"]["equal_weight"]["sharpe"])
    return {"book": {k: {m: v.get(m) for m in HEADLINE} for k, v in summary["book"].items()},
            "overfitting": {k: over.get(k) for k in ("n_trials", "universe", "pbo")}}


def _fold_rows(books: list[PortfolioResult], inputs: BookInputs, scored: list[int],
               chosen: dict[int, PortfolioConfig | None], ranking: dict[str, Any],
               params: Params) -> list[dict[str, Any]]:
    """Per scored fold: the configuration, each book's return/Sharpe/drawdown and exposure,
    and the ranking quality of the forecasts that fold."""
    rows = []
    for fold in scored:
        start, stop = inputs.span([fold])
        span = (str(fold), pd.Timestamp(int(inputs.ts_ns[start]), tz="UTC"),
                pd.Timestamp(int(inputs.ts_ns[stop - 1]), tz="UTC"))
        config = chosen[fold]
        row: dict[str, Any] = {"fold": fold, "start": str(span[1]), "end": str(span[2]),
                               "config": "flat" if config is None else config.label()}
        for result in books:
            values = period_rows(result, [span])
            if values:
                row[result.name] = values[0]
        horizon = (chosen[fold] or params.portfolio.default).horizon
        for name in ("ensemble", "momentum_rank"):
            per = ranking.get(f"{name}@h{horizon}", {}).get("folds", {}).get(str(fold), {})
            row[f"{name}.rank_ic"], row[f"{name}.icir"] = per.get("rank_ic"), per.get("icir")
        row["horizon"] = horizon
        rows.append(row)
    return rows


def _write_outputs(paths: Paths, summary: dict[str, Any], books: list[PortfolioResult]) -> None:
    metrics = paths.metrics / "portfolio"  # ranking.json is the portfolio stage's
    metrics.mkdir(parents=True, exist_ok=True)
    for old in metrics.glob("*.json"):
        if old.name != "ranking.json":
            old.unlink()
    for name, values in summary["book"].items():
        headline = {k: values.get(k) for k in HEADLINE}
        headline["costs_paid"] = (values.get("costs_paid") or {}).get("total")
        write_json(metrics / f"{name}.json", headline)
    over = summary["overfitting"]
    write_json(metrics / "overfitting.json", {
        "n_trials": over["n_trials"], "universe": over["universe"],
        "dsr": (over.get("deflated_sharpe") or {}).get("dsr"), "pbo": over.get("pbo")})
    write_json(metrics / "folds.json", {
        f"fold_{r['fold']}": {"config": r["config"],
                              "return": (r.get(PORTFOLIO) or {}).get("return"),
                              "equal_weight_return": (r.get("equal_weight") or {}).get("return"),
                              "rank_ic": r.get("ensemble.rank_ic"), "icir": r.get("ensemble.icir")}
        for r in summary["folds"]})
    reports = paths.root / "reports" / "portfolio"
    reports.mkdir(parents=True, exist_ok=True)
    write_json(reports / "summary.json", summary)
    book = books[0]
    pd.DataFrame({"timestamp": book.timestamps, "equity": book.equity}).to_parquet(
        reports / "book.parquet", index=False)
    book.fills.to_csv(reports / "fills.csv", index=False)
    book.decisions.to_csv(reports / "decisions.csv", index=False)
    curves = pd.DataFrame({r.name: r.equity_series for r in books}).ffill()
    step = max(1, len(curves) // 2000)  # a readable plot: at most ~2,000 points
    drawdown = pd.DataFrame({c: drawdown_curve(curves[c].to_numpy()) for c in curves},
                            index=curves.index)
    exposure = exposure_frame(book)
    plots = paths.plots / "portfolio"
    plots.mkdir(parents=True, exist_ok=True)
    curves.iloc[::step].reset_index(drop=True).rename_axis("step").to_csv(plots / "equity.csv")
    drawdown.iloc[::step].reset_index(drop=True).rename_axis("step").to_csv(
        plots / "drawdown.csv")
    exposure.iloc[::step].reset_index(drop=True).rename_axis("step").to_csv(
        plots / "exposure.csv")
    stamped = curves.iloc[::step].rename_axis("timestamp").reset_index()
    (reports / "portfolio.png").write_bytes(report_png(
        stamped, drawdown.iloc[::step].rename_axis("timestamp").reset_index(), PORTFOLIO))
    (reports / "exposure.png").write_bytes(exposure_png(
        exposure.iloc[::step].rename_axis("timestamp").reset_index()))
