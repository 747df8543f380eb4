"""Point MLflow at the project's local tracking store (SQLite + an artifact folder)."""

from __future__ import annotations

from pathlib import Path

import mlflow

from candlecast.common.uris import absolute_sqlite_uri


def configure_mlflow(
    tracking_uri: str, artifact_root: str | Path, experiment: str, root: Path
) -> str:
    """Set the tracking URI (relative SQLite paths are taken from ``root``) and make sure the
    experiment exists with its artifacts under ``artifact_root``. Returns the experiment id."""
    mlflow.set_tracking_uri(absolute_sqlite_uri(tracking_uri, root))
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return str(found.experiment_id)
    if tracking_uri.startswith(("http://", "https://")):  # a tracking server: its artifact store
        experiment_id = mlflow.create_experiment(experiment)
        mlflow.set_experiment(experiment_id=experiment_id)
        return str(experiment_id)
    artifacts = Path(artifact_root)
    if not artifacts.is_absolute():
        artifacts = root / artifacts
    artifacts.mkdir(parents=True, exist_ok=True)
    experiment_id = mlflow.create_experiment(
        experiment, artifact_location=artifacts.resolve().as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)
