"""`compare` stage: every model, baselines and ensemble side by side, out of sample only.

The headline table pools the folds that EVERY model (the ensemble included) predicted out of
sample (``evaluated_folds``: the ensemble needs earlier folds to train on), so all rows of the
table rest on the same bars; per-fold numbers cover every fold. Writes:

* ``metrics/models/<model>@h<h>.json`` (DVC metrics): the pooled out-of-sample headline numbers,
  one small file per model and label horizon (every table is per horizon);
* ``reports/models/``: ``comparison.csv`` (all metrics, pooled), ``comparison_all_folds.csv``
  (base models over all folds), ``per_fold.csv``, ``per_regime.csv``, ``calibration.csv``;
* ``plots/models/``: ``calibration.png``, ``metric_by_fold.png`` and per-model calibration
  CSVs (DVC plots); everything is also logged to the pipeline's parent MLflow run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from candlecast.config import Params  # noqa: E402
from candlecast.evaluation.metrics import (  # noqa: E402
    METRIC_NAMES,
    calibration_curve,
    fold_summary,
    metrics_table,
)
from candlecast.pipeline.ensemble_stage import load_zoo_predictions  # noqa: E402
from candlecast.pipeline.paths import Paths  # noqa: E402
from candlecast.pipeline.zoo_common import (  # noqa: E402
    ZooPaths,
    fresh_dir,
    load_zoo_data,
    metrics_config,
    write_json,
    zoo_run,
)
from candlecast.tracking.runs import log_run  # noqa: E402
from candlecast.training.walkforward import attach_regimes  # noqa: E402

log = logging.getLogger(__name__)
HEADLINE: tuple[str, ...] = (
    "log_loss", "brier", "accuracy", "balanced_accuracy", "auc", "ic", "ece",
    "top_decile_accuracy", "pnl_net", "turnover",
)
DETAIL: tuple[str, ...] = ("log_loss", "auc", "pnl_net")
#: what each metrics/models/<model>@h<h>.json holds
HEADLINE_FILE: tuple[str, ...] = ("log_loss", "auc", "accuracy", "ic", "ece",
                                  "top_decile_accuracy", "pnl_net")
_COLUMNS = ["model", "family", "fold", "series", "timestamp", "y", "prob_up", "ret"]


def _value(x: object) -> float | None:
    """A JSON-safe number (NaN -> null)."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def comparison_tables(
    predictions: pd.DataFrame, failures: pd.DataFrame, evaluated: list[int], params: Params
) -> dict[str, pd.DataFrame]:
    """Per-fold, pooled (common folds), pooled (all folds) and per-regime tables."""
    config = metrics_config(params)
    per_fold = metrics_table(predictions, ("model", "fold"), config=config, failures=failures)
    common = predictions[predictions["fold"].isin(evaluated)]
    pooled = metrics_table(common, ("model",), config=config)
    summary = fold_summary(per_fold[per_fold["fold"].isin(evaluated)])
    pooled = pooled.merge(
        summary[["model", "n_folds", "n_failed_folds", "log_loss_std"]], on="model", how="left"
    )
    families = predictions.drop_duplicates("model").set_index("model")["family"]
    pooled.insert(1, "family", pooled["model"].map(families))
    base = predictions[predictions["family"] != "ensemble"]
    all_folds = metrics_table(base, ("model",), config=config)
    frame = common.copy()
    frame["regime"] = frame["regime"].astype("Int64").astype(str).replace("<NA>", "unknown")
    per_regime = metrics_table(frame, ("model", "regime"), config=config)
    order = {m: i for i, m in enumerate(predictions["model"].drop_duplicates())}
    pooled = pooled.sort_values("model", key=lambda s: s.map(order)).reset_index(drop=True)
    return {"per_fold": per_fold, "pooled": pooled, "all_folds": all_folds,
            "per_regime": per_regime}


def run_compare(params: Params, paths: Paths) -> dict[str, object]:
    zoo = load_zoo_data(params, paths)
    zoo_paths = ZooPaths(paths.root)
    base, failures = load_zoo_predictions(params, zoo_paths)
    ensemble = pd.read_parquet(zoo_paths.ensemble_dir / "oof.parquet")
    summary = json.loads((zoo_paths.ensemble_dir / "summary.json").read_text())
    regime = pd.read_parquet(zoo_paths.regime_dir / "regime.parquet")
    tables: dict[str, list[pd.DataFrame]] = {}
    evaluated_by: dict[int, list[int]] = {}
    primary = params.label_horizon
    common = pd.DataFrame()
    for horizon in params.models.horizons:
        rows = pd.concat([base.loc[base["horizon"] == horizon, _COLUMNS],
                          ensemble.loc[ensemble["horizon"] == horizon, _COLUMNS]],
                         ignore_index=True)
        rows = attach_regimes(rows, regime)
        evaluated = [int(f) for f in summary["by_horizon"][str(horizon)]["evaluated_folds"]]
        evaluated_by[horizon] = evaluated
        failed = failures[failures["horizon"] == horizon].drop(columns=["horizon"])
        for name, table in comparison_tables(rows, failed, evaluated, params).items():
            table.insert(0, "horizon", horizon)
            tables.setdefault(name, []).append(table)
        if horizon == primary:
            common = rows[rows["fold"].isin(evaluated)]
    merged = {name: pd.concat(parts, ignore_index=True) for name, parts in tables.items()}

    reports = fresh_dir(zoo_paths.reports)
    plots = fresh_dir(zoo_paths.plots)
    merged["pooled"].to_csv(reports / "comparison.csv", index=False)
    merged["all_folds"].to_csv(reports / "comparison_all_folds.csv", index=False)
    merged["per_fold"].to_csv(reports / "per_fold.csv", index=False)
    merged["per_regime"].to_csv(reports / "per_regime.csv", index=False)
    curves = _calibration(common, params.evaluate.calibration_bins)
    curves.to_csv(reports / "calibration.csv", index=False)
    (plots / "calibration").mkdir()
    for model, curve in curves.groupby("model", sort=False):
        curve.drop(columns="model").to_csv(plots / "calibration" / f"{model}.csv", index=False)
    _plot_calibration(curves, plots / "calibration.png")
    primary_fold = merged["per_fold"][merged["per_fold"]["horizon"] == primary]
    _plot_by_fold(primary_fold.drop(columns=["horizon"]), plots / "metric_by_fold.png")
    _write_metrics(zoo_paths, merged["pooled"], evaluated_by, params)

    run = zoo_run(params, paths, zoo)
    pooled = merged["pooled"].set_index(["horizon", "model"])
    log_run(
        run.parent_id,
        metrics={f"{name}.{model}.h{h}": pooled.loc[(h, model), name]
                 for h, model in pooled.index for name in ("log_loss", "auc", "ic")},
        tags={"evaluated_folds": ",".join(map(str, evaluated_by[primary]))},
    )
    with mlflow.start_run(run_id=run.parent_id):
        mlflow.log_artifacts(str(reports), artifact_path="comparison")
        mlflow.log_artifact(str(plots / "calibration.png"), "plots")
        mlflow.log_artifact(str(plots / "metric_by_fold.png"), "plots")
    at_primary = merged["pooled"][merged["pooled"]["horizon"] == primary].set_index("model")
    best = at_primary["log_loss"].astype(float).idxmin()
    log.info("compare: best pooled log loss at h%d %s (%.5f)", primary, best,
             at_primary.loc[best, "log_loss"])
    return {"models": list(at_primary.index), "horizons": list(params.models.horizons),
            "evaluated_folds": evaluated_by[primary], "best_log_loss": best,
            "mlflow_parent_run_id": run.parent_id}


def _write_metrics(zoo_paths: ZooPaths, pooled: pd.DataFrame, evaluated: dict[int, list[int]],
                   params: Params) -> None:
    """One small file per model and horizon (``metrics/models/<model>@h<h>.json``: the pooled
    out-of-sample headline numbers), so ``dvc metrics show`` is a table of models."""
    folder = zoo_paths.metrics_dir
    if folder.exists():
        for old in folder.glob("*.json"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for _, row in pooled.iterrows():
        h = int(row["horizon"])
        write_json(folder / f"{row['model']}@h{h}.json", {
            **{name: _value(row[name]) for name in HEADLINE_FILE},
            "n": _value(row["n"]), "folds": ",".join(map(str, evaluated[h])),
            "cost_bps": params.evaluate.cost_bps,
        })


def _calibration(predictions: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Reliability curve per model on quantile bins of its own predictions."""
    parts = []
    for model, group in predictions.groupby("model", sort=False):
        curve = calibration_curve(group["y"], group["prob_up"], bins, strategy="quantile")
        curve.insert(0, "model", model)
        parts.append(curve[curve["count"] > 0])
    return pd.concat(parts, ignore_index=True)


def _plot_calibration(curves: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    lo = float(np.nanmin(curves[["mean_prob", "frac_up"]].to_numpy())) - 0.01
    hi = float(np.nanmax(curves[["mean_prob", "frac_up"]].to_numpy())) + 0.01
    ax.plot([lo, hi], [lo, hi], "--", color="grey", label="perfectly calibrated")
    for model, curve in curves.groupby("model", sort=False):
        ax.plot(curve["mean_prob"], curve["frac_up"], "o-", ms=3, label=model)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="mean predicted P(up)",
           ylabel="observed fraction up", title="Calibration per model, out of sample")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_by_fold(per_fold: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    ok = per_fold[per_fold["status"] == "ok"]
    for ax, metric in zip(axes, ("log_loss", "auc"), strict=True):
        for model, group in ok.groupby("model", sort=False):
            ax.plot(group["fold"], group[metric], "o-", ms=4, label=model)
        if metric == "auc":
            ax.axhline(0.5, color="grey", ls="--", lw=1)
        ax.set(xlabel="fold (test window, oldest first)", ylabel=metric,
               title=f"{metric} by fold, out of sample")
    failed = per_fold[per_fold["status"] == "failed"]
    for _, row in failed.iterrows():
        axes[0].axvline(row["fold"], color="red", alpha=0.2)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


assert set(HEADLINE) <= set(METRIC_NAMES)
