"""The Evidently (0.7) report of a drift check: the edge that renders what ``drift`` decided.

The report uses the same statistic and thresholds as :func:`drift_verdict` (Evidently's
``wasserstein`` stat test is the normed Wasserstein distance), so the HTML a user opens shows
the numbers the flow acted on; :func:`evidently_scores` reads them back (tests compare both).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.monitoring.config import DriftConfig
from candlecast.monitoring.drift import DriftVerdict


def build_report(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str],
                 config: DriftConfig, *, prob: str = "prob_up", label: str = "y") -> Any:
    """Run an Evidently report (data drift per feature, P(up) drift, and when both windows
    have labels the target's drift) and return its snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    monitored = [f for f in features if f not in config.exclude]
    numeric = list(monitored)
    metrics: list[Any] = [
        DataDriftPreset(columns=monitored, method="wasserstein",
                        threshold=config.feature_threshold, drift_share=config.drift_share),
    ]
    if prob in reference.columns and prob in current.columns:
        numeric.append(prob)
        metrics.append(ValueDrift(column=prob, method="wasserstein",
                                  threshold=config.prediction_threshold))
    if (label in reference.columns and label in current.columns
            and current[label].notna().any() and reference[label].notna().any()):
        numeric.append(label)
        metrics.append(ValueDrift(column=label, method="wasserstein", threshold=0.5))
    definition = DataDefinition(numerical_columns=numeric)

    def dataset(frame: pd.DataFrame) -> Any:
        data = frame[numeric].astype(float).reset_index(drop=True)
        return Dataset.from_pandas(data, data_definition=definition)

    report = Report(metrics, include_tests=True)
    return report.run(dataset(current), dataset(reference))


def evidently_scores(snapshot: Any) -> dict[str, float]:
    """Per-column drift score of the snapshot's ``ValueDrift`` metrics, by column."""
    scores = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    return scores


def write_drift_outputs(snapshot: Any, verdict: DriftVerdict, out_dir: Path, stamp: str,
                        lineage: dict[str, str]) -> dict[str, Path]:
    """``drift_<stamp>.html`` (Evidently), ``drift_<stamp>.json`` (the verdict + lineage), and
    ``latest.html`` / ``latest.json`` copies for the README's "open the report" step."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / f"drift_{stamp}.html"
    verdict_path = out_dir / f"drift_{stamp}.json"
    snapshot.save_html(str(html))
    payload = json.dumps({**verdict.as_dict(), "lineage": lineage, "report": html.name},
                         indent=2, sort_keys=True, default=str) + "\n"
    verdict_path.write_text(payload)
    (out_dir / "latest.html").write_bytes(html.read_bytes())
    (out_dir / "latest.json").write_text(payload)
    return {"html": html, "verdict": verdict_path}
