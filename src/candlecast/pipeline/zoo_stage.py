"""`train-model@<name>` stage: one zoo model trained and scored walk-forward, tracked in MLflow.

Writes ``models/zoo/<name>/``: ``oof.parquet`` (out-of-fold predictions of every direction
model the name produces), ``fold_metrics.csv`` (per model and fold, failed folds included),
``folds.csv`` (boundaries, timings, fit info), ``failures.csv``, ``summary.json`` and
``final/<model>/`` (the latest fold's fitted model, for serving and the benchmark). LightGBM
adds ``optuna.db`` (one study per fold) and ``trials.csv``. In MLflow: a run per direction
model under the pipeline's parent run, a nested run per fold and, for LightGBM, per trial.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from candlecast.compute import run_units
from candlecast.config import Params
from candlecast.data.store import write_parquet_atomic
from candlecast.evaluation.splits import Fold
from candlecast.models import registry
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import (
    ZooPaths,
    finish_run,
    flatten,
    fold_metrics,
    fresh_dir,
    load_zoo_data,
    log_model_runs,
    metrics_config,
    write_json,
    zoo_run,
)
from candlecast.tracking.runs import KIND_TAG, create_run
from candlecast.training.walkforward import FoldOutcome, run_walk_forward

log = logging.getLogger(__name__)


def model_section(params: Params, name: str) -> Any:
    """The params section a registry factory takes (the transformer's validated on demand)."""
    if name == "transformer":
        params.deferred("models.transformer")  # one clear error before any training
    return getattr(params.models, name)


def build_fold_models(
    model: str, section: Any, horizon: int, workdir: Path, root: Path, torch_threads: int,
    fold: Fold,
) -> list:
    """The fresh direction models of ``model`` for one fold (in the process that fits them:
    the torch thread count is set there, so a task-runner worker fits as this process would)."""
    spec = registry.spec(model)
    if spec.family in ("foundation", "neural"):
        import torch

        torch.set_num_threads(torch_threads)
    return spec.build(section, registry.BuildContext(fold.index, horizon, workdir, root))


def run_train_model(params: Params, paths: Paths, model: str | None = None) -> dict[str, object]:
    if model is None:
        raise ValueError(
            f"train-model needs a model name; expected one of {list(params.models.run)}"
        )
    spec = registry.spec(model)
    if model not in params.models.run:
        raise ValueError(
            f"model {model!r} is not in models.run {list(params.models.run)}; add it there "
            "(the ensemble and the comparison read that list)"
        )
    section = model_section(params, model)
    zoo = load_zoo_data(params, paths)
    out = fresh_dir(ZooPaths(paths.root).model_dir(model))
    run = zoo_run(params, paths, zoo)
    outputs = list(spec.outputs(section))
    families = {name: spec.family for name in outputs}
    section_params = flatten(
        model, section if isinstance(section, dict) else section.model_dump(mode="json")
    )
    config = metrics_config(params)
    tables: dict[str, list[pd.DataFrame]] = {k: [] for k in (
        "predictions", "per_fold", "folds", "failures", "trials", "importance")}
    run_ids: dict[str, dict[int, str]] = {}
    per_horizon: dict[str, dict[str, Any]] = {}
    for horizon in params.models.horizons_of(model):
        data, folds, data_spec = zoo.horizon(horizon)
        context = spec.context_bars(section, horizon)

        build = partial(build_fold_models, model, section, horizon, out, paths.root,
                        params.models.torch_threads)

        def progress(outcome: FoldOutcome, h: int = horizon) -> None:
            log.info(
                "%s h%d fold %d: %s (fit %.1fs, predict %.1fs)%s", outcome.model, h,
                outcome.fold.index, outcome.status, outcome.fit_seconds,
                outcome.predict_seconds, f" {outcome.error}" if outcome.error else "",
            )

        result = run_walk_forward(
            build, data, folds, data_spec,
            history=zoo.history if context else None, context_bars=context, on_outcome=progress,
            map_folds=partial(  # each fold a Prefect task on compute.runner (inline: a loop)
                run_units, config=params.compute, name=f"fit-{model}-h{horizon}",
                label=lambda fold: f"fold{fold.index}",
            ),
        )
        for name, fitted in result.final_models.items():
            registry.save_model(fitted, out / "final" / f"h{horizon}" / name)
        per_fold = fold_metrics(result.predictions, result.failures, config)
        per_fold.insert(2, "cost_bps", config.cost_bps)
        fold_rows = result.fold_table()
        ids = log_model_runs(
            run, predictions=result.predictions, fold_rows=fold_rows, per_fold=per_fold,
            models=outputs, family=families,
            params={**section_params, "context_bars": context, "label": data_spec.label},
            config=config, horizon=horizon,
        )
        trials, importances = _lightgbm_extras(result.outcomes) if model == "lightgbm" \
            else ([], [])
        _log_trials(run.experiment_id, ids.get("lightgbm", {}), trials, run.tags, horizon)
        for name, entry in ids.items():
            run_ids.setdefault(name, {})[horizon] = entry["run_id"]
        for key, frame in (("predictions", result.predictions), ("per_fold", per_fold),
                           ("folds", fold_rows), ("failures", result.failures),
                           *(("trials", t) for t in trials),
                           *(("importance", t) for t in importances)):
            frame = frame.copy()
            frame.insert(0, "horizon", horizon)
            tables[key].append(frame)
        ok = per_fold[per_fold["status"] == "ok"]
        per_horizon[str(horizon)] = {
            "rows": len(result.predictions),
            "failed_folds": result.failures.to_dict(orient="records"),
            "log_loss_mean": {m: float(g["log_loss"].mean()) for m, g in ok.groupby("model")},
            "fit_seconds": {m: float(g["fit_seconds"].sum())
                            for m, g in fold_rows.groupby("model")},
        }
    files = {"predictions": "oof.parquet", "per_fold": "fold_metrics.csv",
             "folds": "folds.csv", "failures": "failures.csv", "trials": "trials.csv",
             "importance": "feature_importance.csv"}
    for key, frames in tables.items():
        if not frames:
            continue
        table = pd.concat(frames, ignore_index=True)
        if key == "predictions":
            write_parquet_atomic(table, out / files[key])
        else:
            table.to_csv(out / files[key], index=False)
    for name, by_horizon in run_ids.items():
        for horizon, run_id in by_horizon.items():
            with mlflow.start_run(run_id=run_id):
                mlflow.log_artifact(str(out / "fold_metrics.csv"))
                mlflow.log_artifact(str(out / "folds.csv"))
                final = out / "final" / f"h{horizon}" / name
                if final.exists():
                    mlflow.log_artifacts(str(final), artifact_path="final_model")
                if name == "lightgbm" and (out / "feature_importance.csv").exists():
                    mlflow.log_artifact(str(out / "feature_importance.csv"))
            finish_run(run_id)
    summary = {
        "model": model,
        "outputs": outputs,
        "family": spec.family,
        "folds": len(zoo.folds),
        "horizons": list(params.models.horizons_of(model)),
        "by_horizon": per_horizon,
        "rows": sum(v["rows"] for v in per_horizon.values()),
        "failed_folds": [f for v in per_horizon.values() for f in v["failed_folds"]],
        "mlflow_parent_run_id": run.parent_id,
        "mlflow_run_ids": {f"{name}@h{h}": rid for name, hs in run_ids.items()
                           for h, rid in hs.items()},
        "pipeline_key": run.key,
    }
    write_json(out / "summary.json", summary)
    return summary


def _lightgbm_extras(
    outcomes: list[FoldOutcome],
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Optuna trials and feature importance per fold (written next to the predictions)."""
    trials, importances = [], []
    for outcome in outcomes:
        extras = outcome.artifacts
        if "trials" in extras:
            table = extras["trials"].copy()
            table.insert(0, "fold", outcome.fold.index)
            trials.append(table)
        if "feature_importance" in extras:
            table = extras["feature_importance"].copy()
            table.insert(0, "fold", outcome.fold.index)
            importances.append(table)
    return trials, importances


def _log_trials(
    experiment_id: str, entry: dict[str, Any], trials: list[pd.DataFrame], tags: dict[str, str],
    horizon: int,
) -> None:
    """Each Optuna trial as a run nested under its fold's run."""
    fold_runs = entry.get("folds", {})
    for table in trials:
        for _, trial in table.iterrows():
            fold = int(trial["fold"])
            if fold not in fold_runs:
                continue
            params = {k.removeprefix("param."): v for k, v in trial.items()
                      if str(k).startswith("param.") and pd.notna(v)}
            create_run(
                experiment_id,
                fold_runs[fold],
                f"lightgbm h{horizon} fold {fold} trial {int(trial['number'])}",
                {KIND_TAG: "trial", "model": "lightgbm", "model_family": "gbm",
                 "horizon": str(horizon),
                 "fold": str(fold), "trial": str(int(trial["number"])),
                 "state": trial["state"], **tags},
                params=params,
                metrics={"val_log_loss": trial["value"], "best_iteration": trial["best_iteration"],
                         "last_step": trial["last_step"], "duration_s": trial["duration_s"]},
                status="FINISHED" if trial["state"] == "COMPLETE" else "KILLED",
            )
