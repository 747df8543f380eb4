"""`policy` stage: choose the decision policy walk-forward, net of costs, on forecasts the
models never trained on; and the policy to deploy with the model.

The ensemble's out-of-sample forecasts (``models/ensemble/oof.parquet``) cover folds ``f1 <
f2 < ...``. For every fold ``k`` after the first, :func:`~candlecast.policy.tuning.tune_policy`
searches ``policy.search`` on the bars of the folds BEFORE ``k`` (each candidate backtested
through the risk engine with the full cost model) and the winner is what fold ``k`` is traded
with; fold ``k``'s own bars are never looked at here (the ``backtest`` stage scores them, once).
The first fold has nothing earlier to tune on and is not scored. The policy deployed with the
model is chosen the same way on every fold (what the next, unseen window would get).

Outputs (``models/policy/``): ``folds.json`` (per scored fold: the chosen configuration or
flat, the tuning window and score, the reason), ``trials.csv`` (every candidate of every
search: the deflated Sharpe counts them, the PBO universe backtests them), ``deploy.json`` and
``summary.json``; an MLflow ``policy`` run under the pipeline's parent run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.config import Params
from candlecast.data.store import CandleStore
from candlecast.pipeline.decision_inputs import SeriesForecasts, load_series_forecasts
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import ZooPaths, fresh_dir, log_stage_run, write_json
from candlecast.policy.config import PolicyConfig
from candlecast.policy.tuning import TuningResult, tune_policy
from candlecast.tracking.runs import KIND_TAG

log = logging.getLogger(__name__)


def policy_dir(root: Path) -> Path:
    return root / "models" / "policy"


def ensemble_forecasts(params: Params, paths: Paths) -> tuple[pd.DataFrame, list[int]]:
    """The decided model's out-of-sample rows (every horizon) and its folds, oldest first."""
    source = ZooPaths(paths.root).ensemble_dir / "oof.parquet"
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing; run the ensemble stage first")
    oof = pd.read_parquet(source)
    mine = oof[oof["model"] == params.backtest.model]
    if mine.empty:
        raise ValueError(f"{source} has no rows of model {params.backtest.model!r}")
    return mine, sorted(int(f) for f in mine["fold"].unique())


def series_forecasts(params: Params, paths: Paths, rows: pd.DataFrame) -> list[SeriesForecasts]:
    features = pd.read_parquet(paths.features, columns=[
        "series_id", "event_timestamp", "atr", "logret_1", "ema_dist_20", "rv_48"])
    return load_series_forecasts(CandleStore(paths.validated), params.ingest.series, rows,
                                 features)


def choose(params: Params, inputs: list[SeriesForecasts], folds: list[int],
           study: str, seed_offset: int) -> TuningResult | None:
    """Tune on the bars of ``folds`` (None when tuning is off: the default is used)."""
    cfg = params.policy
    if not cfg.tuning.enabled:
        return None
    windows = [s.window(folds) for s in inputs]
    return tune_policy(windows, cfg.search, cfg.tuning, cfg.default, params.risk, params.costs,
                       params.backtest.run, study_name=study, seed_offset=seed_offset)


def _entry(result: TuningResult | None, default: PolicyConfig) -> dict[str, Any]:
    if result is None:
        return {"policy": default.model_dump(mode="json"), "label": default.label(),
                "flat": False, "score": None, "trials": 0,
                "reason": "policy.tuning.enabled is false: the default policy"}
    return {"policy": None if result.chosen is None else result.chosen.model_dump(mode="json"),
            "label": "flat" if result.chosen is None else result.chosen.label(),
            "flat": result.chosen is None, "score": result.best_score,
            "trials": len(result.trials), "reason": result.reason}


def run_policy(params: Params, paths: Paths) -> dict[str, object]:
    rows, folds = ensemble_forecasts(params, paths)
    if len(folds) < 2:
        raise ValueError(f"the ensemble has out-of-sample folds {folds}; the policy needs at "
                         "least two (tuned on the earlier, scored on the later): raise "
                         "walk_forward.max_folds")
    inputs = series_forecasts(params, paths, rows)
    out = fresh_dir(policy_dir(paths.root))
    scored: dict[str, dict[str, Any]] = {}
    tables = []
    for position, fold in enumerate(folds[1:], start=1):
        earlier = folds[:position]
        result = choose(params, inputs, earlier, f"policy-fold{fold}", position)
        entry = _entry(result, params.policy.default)
        span = inputs[0].window(earlier).market.timestamps
        entry.update(tuned_on_folds=earlier, tuning_start=str(span[0]), tuning_end=str(span[-1]))
        scored[str(fold)] = entry
        if result is not None:
            tables.append(result.trials.assign(search=f"fold{fold}"))
        log.info("policy for fold %d: %s (%s)", fold, entry["label"], entry["reason"])
    result = choose(params, inputs, folds, "policy-deploy", len(folds))
    deploy = _entry(result, params.policy.default)
    deploy.update(tuned_on_folds=folds)
    if result is not None:
        tables.append(result.trials.assign(search="deploy"))
    trials = (pd.concat(tables, ignore_index=True) if tables
              else pd.DataFrame(columns=["search", "number", "label", "config"]))
    trials.to_csv(out / "trials.csv", index=False)
    write_json(out / "folds.json", scored)
    write_json(out / "deploy.json", deploy)
    summary = {
        "scored_folds": [int(f) for f in folds[1:]],
        "unscored_folds": [folds[0]],
        "searches": int(trials["search"].nunique()) if len(trials) else 0,
        "configurations_tried": len(trials),
        "distinct_configurations": int(trials["label"].nunique()) if len(trials) else 0,
        "per_fold": {k: v["label"] for k, v in scored.items()},
        "deploy": deploy["label"],
        "objective": params.policy.tuning.objective,
    }
    write_json(out / "summary.json", summary)
    _log_to_mlflow(params, paths, out, summary, scored, deploy)
    return summary


def _log_to_mlflow(params: Params, paths: Paths, out: Path, summary: dict[str, Any],
                   scored: dict[str, dict[str, Any]], deploy: dict[str, Any]) -> None:
    metrics = {f"fold{k}.tuning_score": v["score"] for k, v in scored.items()
               if v["score"] is not None}
    metrics["configurations_tried"] = float(summary["configurations_tried"])
    log_stage_run(
        params, paths, "policy",
        {KIND_TAG: "policy", "deploy": deploy["label"],
         **{f"fold{k}.policy": v["label"] for k, v in scored.items()}},
        {"objective": params.policy.tuning.objective,
         "n_trials": params.policy.tuning.n_trials,
         "search": params.policy.search.model_dump_json()[:500]},
        metrics, [out / name for name in ("trials.csv", "folds.json", "deploy.json")])
