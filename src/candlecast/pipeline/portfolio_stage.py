"""`portfolio` stage: the book's construction chosen walk-forward, net of costs, on forecasts
the models never trained on; how well each model ranks the coins, per fold.

The pooled ensemble's out-of-sample forecasts (relative to the basket) cover folds ``f1 <
f2 < ...``. For every fold ``k`` after the first, :func:`~candlecast.portfolio.tuning.tune_book`
searches ``portfolio.search`` on the folds BEFORE ``k`` (each candidate one account through
the risk engine with the full cost model); the winner trades fold ``k``, whose bars are never
looked at here (the ``portfolio-backtest`` stage scores them, once). The configuration deployed
with the model is chosen the same way on every fold.

Ranking quality, out of sample, per fold and pooled, for every zoo model, the ensemble, the
simple average and the momentum-rank baseline: rank IC, ICIR, top-minus-bottom spread and
ranking turnover (:mod:`candlecast.evaluation.cross_section`).

Outputs (``models/portfolio/``): ``folds.json``, ``trials.csv`` (every candidate: the DSR
counts them, the PBO universe replays them), ``deploy.json``, ``summary.json``;
``metrics/portfolio/ranking.json`` and ``reports/portfolio/ranking.json``; an MLflow
``portfolio`` run under the pipeline's parent run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.config import Params
from candlecast.evaluation.cross_section import ranking_metrics
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.portfolio_inputs import BookInputs, load_book_inputs
from candlecast.pipeline.zoo_common import ZooPaths, fresh_dir, log_stage_run, write_json
from candlecast.policy.tuning import TuningResult
from candlecast.portfolio.config import PortfolioConfig
from candlecast.portfolio.tuning import tune_book
from candlecast.tracking.runs import KIND_TAG

log = logging.getLogger(__name__)


def portfolio_dir(root: Path) -> Path:
    return root / "models" / "portfolio"


def book_folds(inputs: BookInputs) -> list[int]:
    return sorted(int(f) for f in set(inputs.fold.tolist()) if f >= 0)


def choose(params: Params, inputs: BookInputs, folds: list[int], study: str,
           seed_offset: int) -> TuningResult:
    pf = params.portfolio
    return tune_book(inputs.window(folds), pf.search, pf.tuning, pf.default, params.risk,
                     params.costs, params.backtest.run, study_name=study,
                     seed_offset=seed_offset)


def _entry(result: TuningResult) -> dict[str, Any]:
    chosen: PortfolioConfig | None = result.chosen
    return {"portfolio": None if chosen is None else chosen.model_dump(mode="json"),
            "label": "flat" if chosen is None else chosen.label(), "flat": chosen is None,
            "score": result.best_score, "trials": len(result.trials), "reason": result.reason}


def run_portfolio_stage(params: Params, paths: Paths) -> dict[str, object]:
    inputs = load_book_inputs(params, paths)
    folds = book_folds(inputs)
    if len(folds) < 2:
        raise ValueError(f"the ensemble has out-of-sample folds {folds}; the portfolio needs at "
                         "least two (tuned on the earlier, scored on the later)")
    out = fresh_dir(portfolio_dir(paths.root))
    scored: dict[str, dict[str, Any]] = {}
    tables = []
    for position, fold in enumerate(folds[1:], start=1):
        earlier = folds[:position]
        result = choose(params, inputs, earlier, f"portfolio-fold{fold}", position)
        entry = _entry(result)
        start, stop = inputs.span(earlier)
        entry.update(tuned_on_folds=earlier,
                     tuning_start=str(pd.Timestamp(int(inputs.ts_ns[start]), tz="UTC")),
                     tuning_end=str(pd.Timestamp(int(inputs.ts_ns[stop - 1]), tz="UTC")))
        scored[str(fold)] = entry
        tables.append(result.trials.assign(search=f"fold{fold}"))
        log.info("portfolio for fold %d: %s (%s)", fold, entry["label"], entry["reason"])
    result = choose(params, inputs, folds, "portfolio-deploy", len(folds))
    deploy = {**_entry(result), "tuned_on_folds": folds}
    tables.append(result.trials.assign(search="deploy"))
    trials = pd.concat(tables, ignore_index=True)
    trials.to_csv(out / "trials.csv", index=False)
    write_json(out / "folds.json", scored)
    write_json(out / "deploy.json", deploy)
    ranking = ranking_tables(params, paths, inputs)
    summary = {
        "scored_folds": folds[1:], "unscored_folds": folds[:1],
        "configurations_tried": len(trials),
        "distinct_configurations": int(trials["label"].nunique()),
        "per_fold": {k: v["label"] for k, v in scored.items()}, "deploy": deploy["label"],
        "objective": params.portfolio.tuning.objective,
        "ranking": {k: v["pooled"] for k, v in ranking.items()},
    }
    write_json(out / "summary.json", summary)
    _log_to_mlflow(params, paths, out, summary, scored)
    return summary


def ranking_tables(params: Params, paths: Paths, inputs: BookInputs) -> dict[str, Any]:
    """Rank IC, ICIR, spread and turnover of every model's out-of-sample scores per horizon,
    beside the momentum-rank baseline; written to metrics/ and reports/."""
    zoo = ZooPaths(paths.root)
    coins = [s.key for s in inputs.series]
    frames = [pd.read_parquet(zoo.model_dir(m) / "oof.parquet",
                              columns=["model", "series", "timestamp", "horizon", "fold",
                                       "prob_up", "ret"])
              for m in params.models.run if (zoo.model_dir(m) / "oof.parquet").exists()]
    ensemble = pd.read_parquet(zoo.ensemble_dir / "oof.parquet")
    frames.append(ensemble[["model", "series", "timestamp", "horizon", "fold", "prob_up",
                            "exp_ret", "ret"]])
    long = pd.concat(frames, ignore_index=True)
    momentum_col = params.portfolio.baselines.momentum_feature
    feats = pd.read_parquet(paths.features, columns=["series_id", "event_timestamp",
                                                     momentum_col])
    feats["event_timestamp"] = pd.to_datetime(feats["event_timestamp"], utc=True)
    scored_folds = sorted(ensemble["fold"].unique())
    out: dict[str, Any] = {}
    for (model, h), part in long.groupby(["model", "horizon"], sort=True):
        part = part[part["fold"].isin(scored_folds)]
        score = "exp_ret" if model in ("ensemble", "simple_average") and part[
            "exp_ret"].notna().any() else "prob_up"
        out[f"{model}@h{int(h)}"] = ranking_metrics(part, score, "ret", coins)
        if model == "ensemble":
            mom = part.merge(feats.rename(columns={"series_id": "series",
                                                   "event_timestamp": "timestamp"}),
                             on=["series", "timestamp"], how="left")
            out[f"momentum_rank@h{int(h)}"] = ranking_metrics(mom, momentum_col, "ret", coins)
    compact = {k: {m: v["pooled"][m] for m in ("rank_ic", "icir", "top_bottom_spread",
                                                "turnover")} for k, v in out.items()}
    write_json(paths.metrics / "portfolio" / "ranking.json", compact)
    write_json(paths.root / "reports" / "portfolio" / "ranking.json", out)
    return out


def _log_to_mlflow(params: Params, paths: Paths, out: Path, summary: dict[str, Any],
                   scored: dict[str, dict[str, Any]]) -> None:
    metrics = {f"fold{k}.tuning_score": v["score"] for k, v in scored.items()
               if v["score"] is not None}
    metrics["configurations_tried"] = float(summary["configurations_tried"])
    for name, values in summary["ranking"].items():
        for key in ("rank_ic", "icir"):
            if values.get(key) == values.get(key):
                metrics[f"{name.replace('@', '_at_')}.{key}"] = values[key]
    log_stage_run(
        params, paths, "portfolio",
        {KIND_TAG: "portfolio", "deploy": summary["deploy"],
         **{f"fold{k}.portfolio": v["label"] for k, v in scored.items()}},
        {"objective": params.portfolio.tuning.objective,
         "n_trials": params.portfolio.tuning.n_trials,
         "search": params.portfolio.search.model_dump_json()[:500]},
        metrics, [out / name for name in ("trials.csv", "folds.json", "deploy.json")])
