"""The drift check: the champion's reference window against the recent window.

* reference: the last ``reference_bars`` bars per series of the champion's training data
  (decision times up to its ``oof_end`` tag), with the champion's P(up) and the labels;
* recent: the last ``recent_bars`` bars per series the champion never trained on (after
  ``oof_end`` + the label horizon), its P(up) and, where already known, the labels.

Writes the Evidently HTML and the JSON verdict under ``ops.drift.report_dir``, logs both to an
MLflow run (``kind=ops.drift``) with the lineage, and alerts when drift is found.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import mlflow
import pandas as pd

from candlecast.config import Params
from candlecast.data.schema import timeframe_to_timedelta
from candlecast.features import feature_names
from candlecast.monitoring.alerts import Notifier, NullNotifier
from candlecast.monitoring.drift import drift_verdict
from candlecast.monitoring.report import build_report, write_drift_outputs
from candlecast.ops.context import (
    load_training_set,
    project_lineage,
    setup_mlflow,
    trained_until,
)
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.scoring import score_probabilities
from candlecast.pipeline.zoo_common import SERIES, TIME
from candlecast.tracking.aliases import CHAMPION

log = logging.getLogger(__name__)


def tail_per_series(frame: pd.DataFrame, bars: int) -> pd.DataFrame:
    return frame.groupby(SERIES, sort=False, group_keys=False).tail(bars).reset_index(drop=True)


def drift_windows(dataset: pd.DataFrame, until: pd.Timestamp, horizon: int, bar: pd.Timedelta,
                  reference_bars: int, recent_bars: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference = rows up to ``until``; recent = rows after ``until + horizon * bar``."""
    reference = tail_per_series(dataset[dataset[TIME] <= until], reference_bars)
    recent = tail_per_series(dataset[dataset[TIME] > until + horizon * bar], recent_bars)
    return reference, recent


def run_drift_check(params: Params, paths: Paths, notifier: Notifier | None = None,
                    stamp: str | None = None) -> dict[str, Any]:
    cfg = params.ops.drift
    notifier = notifier or NullNotifier()
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = setup_mlflow(params, paths)
    name = params.ensemble.registered_model
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException as err:
        raise ValueError(f"no {CHAMPION} of {name!r} to monitor; train one first") from err
    until = trained_until(champion)
    bar = timeframe_to_timedelta(params.ingest.timeframe)
    dataset = load_training_set(params, paths)
    reference, recent = drift_windows(dataset, until, params.label_horizon, bar,
                                      cfg.reference_bars, cfg.recent_bars)
    lineage = {**project_lineage(params, paths).as_tags(),
               "champion_version": str(champion.version),
               "champion_run_id": champion.run_id or ""}
    summary: dict[str, Any] = {"champion_version": str(champion.version),
                               "trained_until": str(until), "recent_rows": len(recent),
                               "reference_rows": len(reference)}
    if len(recent) < cfg.min_rows:
        summary.update(status="insufficient", drifted=False,
                       reason=f"{len(recent)} rows after the champion's training "
                       f"(< ops.drift.min_rows = {cfg.min_rows}); nothing to compare yet")
        log.info("drift check: %s", summary["reason"])
        return summary
    uri = f"models:/{name}/{champion.version}"
    label = params.train.label
    for frame in (reference, recent):
        frame["prob_up"] = score_probabilities(uri, dataset, frame[[SERIES, TIME]], bar,
                                               params.label_horizon)
        frame["y"] = frame[label]
    features = feature_names(params.features)
    verdict = drift_verdict(reference, recent, features, cfg)
    snapshot = build_report(reference, recent, features, cfg)
    out = write_drift_outputs(snapshot, verdict, paths.root / cfg.report_dir, stamp, lineage)
    with mlflow.start_run(run_name=f"drift-check {stamp}") as run:
        mlflow.set_tags({"kind": "ops.drift", **lineage, "drifted": str(verdict.drifted),
                         "reasons": "; ".join(verdict.reasons)[:4000]})
        metrics = {"drift_share": verdict.drift_share,
                   "drifted_features": float(len(verdict.drifted_features)),
                   "recent_rows": float(verdict.recent_rows)}
        if verdict.prediction_score is not None:
            metrics["prediction_drift_score"] = verdict.prediction_score
        if verdict.decay is not None:
            metrics.update({k: float(verdict.decay[k]) for k in
                            ("log_loss_increase", "accuracy_drop", "ece_increase")})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(out["html"]), "drift")
        mlflow.log_artifact(str(out["verdict"]), "drift")
    summary.update(status="checked", drifted=verdict.drifted, reasons=verdict.reasons,
                   drifted_features=verdict.drifted_features, drift_share=verdict.drift_share,
                   prediction_score=verdict.prediction_score, decay=verdict.decay,
                   report=str(out["html"]), verdict=str(out["verdict"]),
                   mlflow_run_id=run.info.run_id, lineage=lineage)
    if verdict.drifted:
        notifier.notify("drift_detected", f"drift against champion v{champion.version}: "
                        + "; ".join(verdict.reasons), drift_share=verdict.drift_share,
                        report=str(out["html"]), mlflow_run_id=run.info.run_id)
    log.info("drift check: drifted=%s %s", verdict.drifted, verdict.reasons)
    return summary
