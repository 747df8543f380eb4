"""`evaluate` stage: out-of-sample metrics beside a base-rate baseline, plots for DVC and MLflow."""

from __future__ import annotations

import json
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from candlecast.config import Params  # noqa: E402
from candlecast.evaluation.metrics import (  # noqa: E402
    MetricsConfig,
    calibration_curve,
    direction_metrics,
)
from candlecast.pipeline.paths import Paths  # noqa: E402
from candlecast.tracking import configure_mlflow  # noqa: E402

log = logging.getLogger(__name__)


def run_evaluate(params: Params, paths: Paths) -> dict[str, object]:
    model_dir = paths.lightgbm_dir
    summary = json.loads((model_dir / "train_summary.json").read_text())
    predictions = pd.read_parquet(model_dir / "predictions.parquet")
    test = predictions[predictions["split"] == "test"]
    y = test["label"].to_numpy()
    base_rate = float(summary["train_base_rate"])
    config = MetricsConfig(
        cost_bps=params.evaluate.cost_bps, calibration_bins=params.evaluate.calibration_bins
    )
    ret = test["fwd_return"].to_numpy()
    metrics = {
        "test_rows": len(test),
        "test_start": summary["boundaries"]["test_start"],
        "lightgbm": _finite(direction_metrics(y, test["prob_up"].to_numpy(), ret, config=config)),
        "base_rate": _finite(
            direction_metrics(y, np.full(len(test), base_rate), ret, config=config)
        ),
    }
    paths.metrics.mkdir(parents=True, exist_ok=True)
    paths.plots.mkdir(parents=True, exist_ok=True)
    (paths.metrics / "evaluate.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )

    # quantile bins: the predictions crowd around 0.5, equal-width bins would hide the shape
    calibration = calibration_curve(
        y, test["prob_up"].to_numpy(), params.evaluate.calibration_bins, strategy="quantile"
    )
    calibration.to_csv(paths.plots / "calibration.csv", index=False)
    importance = pd.read_csv(model_dir / "feature_importance.csv")
    importance.to_csv(paths.plots / "feature_importance.csv", index=False)
    png_calibration = paths.plots / "calibration.png"
    png_importance = paths.plots / "feature_importance.png"
    _plot_calibration(calibration, png_calibration)
    _plot_importance(importance, png_importance)

    configure_mlflow(
        params.mlflow.tracking_uri,
        params.mlflow.artifact_root,
        params.mlflow.experiment,
        paths.root,
    )
    with mlflow.start_run(run_id=summary["mlflow_run_id"]):
        for model, values in (
            ("lightgbm", metrics["lightgbm"]),
            ("base_rate", metrics["base_rate"]),
        ):
            prefix = "test" if model == "lightgbm" else "baseline_base_rate_test"
            mlflow.log_metrics({f"{prefix}_{k}": v for k, v in values.items() if v is not None})
        mlflow.log_artifact(str(png_calibration), "plots")
        mlflow.log_artifact(str(png_importance), "plots")
        mlflow.log_artifact(str(paths.plots / "calibration.csv"), "plots")
    return metrics


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    """NaN (e.g. the AUC of a constant prediction) becomes null in the metrics file."""
    return {k: (float(v) if np.isfinite(v) else None) for k, v in values.items()}


def _plot_calibration(table: pd.DataFrame, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot(table["mean_prob"], table["frac_up"], "o-", label="LightGBM (test)")
    lo = min(table["mean_prob"].min(), table["frac_up"].min()) - 0.02
    hi = max(table["mean_prob"].max(), table["frac_up"].max()) + 0.02
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="mean predicted P(up)",
        ylabel="observed fraction up",
        title="Calibration, out of sample",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_importance(table: pd.DataFrame, path, top: int = 20) -> None:
    head = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(head) + 1.2))
    ax.barh(head["feature"], head["gain"])
    ax.set(xlabel="total gain", title=f"LightGBM feature importance (top {len(head)})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
