"""Pure drift checks: reference and recent windows in, a verdict out.

* data drift per feature: the normed Wasserstein distance (see :class:`DriftConfig`), drifted
  features and their share;
* prediction drift: the same distance on the model's P(up);
* performance decay, when the recent window has labels: log loss, accuracy and expected
  calibration error against the reference window's.

No I/O: the Evidently report (``candlecast.monitoring.report``) and MLflow are at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from candlecast.evaluation.metrics import accuracy, expected_calibration_error, log_loss
from candlecast.monitoring.config import DecayConfig, DriftConfig

#: the std floor of the normalisation (Evidently's value, so both agree on constant columns)
STD_FLOOR = 0.001


def normed_wasserstein(reference: Sequence[float] | np.ndarray,
                       current: Sequence[float] | np.ndarray) -> float:
    """W1(reference, current) / max(std(reference), 0.001); non-finite values dropped.

    Raises ``ValueError`` if either side has no finite value.
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        raise ValueError(
            f"drift needs finite values on both sides, got {ref.size} reference and "
            f"{cur.size} current values"
        )
    norm = max(float(np.std(ref)), STD_FLOOR)
    return float(stats.wasserstein_distance(ref, cur)) / norm


def column_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str],
                 threshold: float) -> pd.DataFrame:
    """One row per column: ``column, score, drifted`` (score >= threshold), in column order."""
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"drift: columns {missing} missing from the reference or current window")
    rows = [(c, normed_wasserstein(reference[c], current[c])) for c in columns]
    frame = pd.DataFrame(rows, columns=["column", "score"])
    frame["drifted"] = frame["score"] >= threshold
    return frame


def performance(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray,
                calibration_bins: int = 10) -> dict[str, float]:
    """``rows, log_loss, accuracy, ece`` of P(up) ``p`` against 0/1 labels ``y``."""
    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return {
        "rows": int(len(y_arr)),
        "log_loss": log_loss(y_arr, p_arr),
        "accuracy": accuracy(y_arr, p_arr),
        "ece": expected_calibration_error(y_arr, p_arr, calibration_bins),
    }


def performance_decay(reference: dict[str, float], recent: dict[str, float],
                      config: DecayConfig) -> dict[str, Any]:
    """Differences recent - reference and which limits they break (``decayed``)."""
    delta = {
        "log_loss_increase": recent["log_loss"] - reference["log_loss"],
        "accuracy_drop": reference["accuracy"] - recent["accuracy"],
        "ece_increase": recent["ece"] - reference["ece"],
    }
    limits = {
        "log_loss_increase": config.max_log_loss_increase,
        "accuracy_drop": config.max_accuracy_drop,
        "ece_increase": config.max_ece_increase,
    }
    broken = [k for k, v in delta.items() if v > limits[k]]
    return {**delta, "broken": broken, "decayed": bool(broken)}


@dataclass(frozen=True)
class DriftVerdict:
    """What the drift check found; ``drifted`` is what the flow acts on."""

    drifted: bool
    reasons: list[str]
    drifted_features: list[str]
    drift_share: float
    data_drift: bool
    feature_scores: dict[str, float]
    prediction_score: float | None
    prediction_drift: bool
    reference_rows: int
    recent_rows: int
    reference_performance: dict[str, float] | None = None
    recent_performance: dict[str, float] | None = None
    decay: dict[str, Any] | None = None
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labelled(frame: pd.DataFrame, label: str, prob: str) -> pd.DataFrame:
    if label not in frame.columns or prob not in frame.columns:
        return frame.iloc[:0]
    return frame[frame[label].notna() & frame[prob].notna()]


def drift_verdict(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str],
                  config: DriftConfig, *, prob: str = "prob_up",
                  label: str = "y") -> DriftVerdict:
    """Compare the recent window ``current`` with ``reference`` (rows of all series).

    ``features`` minus ``config.exclude`` are monitored; ``prob`` (P(up)) gives prediction
    drift if both frames have it; ``label`` (0/1, NaN while unknown) gives performance decay
    once at least ``config.decay.min_rows`` recent rows are labelled.
    """
    monitored = [f for f in features if f not in config.exclude]
    if not monitored:
        raise ValueError("drift: no feature left to monitor (all excluded)")
    for name, frame in (("reference", reference), ("recent", current)):
        if len(frame) < config.min_rows:
            raise ValueError(
                f"drift: the {name} window has {len(frame)} rows, fewer than "
                f"ops.drift.min_rows = {config.min_rows}"
            )
    table = column_drift(reference, current, monitored, config.feature_threshold)
    drifted_features = table.loc[table["drifted"], "column"].tolist()
    share = len(drifted_features) / len(monitored)
    data_drift = share >= config.drift_share
    reasons = []
    if data_drift:
        reasons.append(
            f"data drift: {len(drifted_features)} of {len(monitored)} features "
            f"(share {share:.2f} >= {config.drift_share})"
        )
    prediction_score = None
    prediction_drift = False
    if prob in reference.columns and prob in current.columns:
        prediction_score = normed_wasserstein(reference[prob], current[prob])
        prediction_drift = prediction_score >= config.prediction_threshold
        if prediction_drift:
            reasons.append(
                f"prediction drift: score {prediction_score:.3f} >= "
                f"{config.prediction_threshold}"
            )
    ref_perf = cur_perf = decay = None
    ref_l, cur_l = _labelled(reference, label, prob), _labelled(current, label, prob)
    if len(cur_l) >= config.decay.min_rows and len(ref_l) >= config.decay.min_rows:
        bins = config.decay.calibration_bins
        ref_perf = performance(ref_l[label], ref_l[prob], bins)
        cur_perf = performance(cur_l[label], cur_l[prob], bins)
        decay = performance_decay(ref_perf, cur_perf, config.decay)
        if decay["decayed"]:
            reasons.append("performance decay: " + ", ".join(
                f"{k} {decay[k]:+.4f}" for k in decay["broken"]))
    scores = {c: float(s) for c, s in zip(table["column"], table["score"], strict=True)}
    return DriftVerdict(
        drifted=bool(reasons),
        reasons=reasons,
        drifted_features=drifted_features,
        drift_share=float(share),
        data_drift=bool(data_drift),
        feature_scores={c: (s if math.isfinite(s) else float("nan")) for c, s in scores.items()},
        prediction_score=prediction_score,
        prediction_drift=bool(prediction_drift),
        reference_rows=int(len(reference)),
        recent_rows=int(len(current)),
        reference_performance=ref_perf,
        recent_performance=cur_perf,
        decay=decay,
        thresholds={
            "feature_threshold": config.feature_threshold,
            "drift_share": config.drift_share,
            "prediction_threshold": config.prediction_threshold,
        },
    )
