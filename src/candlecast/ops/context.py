"""Edges the ops checks share: the project's MLflow store, its lineage, the training set and
which rows a registered version trained on. Scoring a registered model with its policy is the
pipeline's own path (:mod:`candlecast.pipeline.scoring`), not a copy of it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from candlecast.config import Params
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import SERIES, TIME, lineage
from candlecast.tracking import Lineage, configure_mlflow, file_digest


def setup_mlflow(params: Params, paths: Paths) -> Any:
    from mlflow.tracking import MlflowClient

    s = params.mlflow
    configure_mlflow(s.tracking_uri, s.artifact_root, s.experiment, paths.root)
    return MlflowClient()


def project_lineage(params: Params, paths: Paths) -> Lineage:
    """Lineage of what the ops loop reads now: the training set's digest, params, commit."""
    data = file_digest(paths.training_set) if paths.training_set.exists() else "unknown"
    return lineage(params, paths, data)


def load_training_set(params: Params, paths: Paths) -> pd.DataFrame:
    if not paths.training_set.exists():
        raise FileNotFoundError(
            f"{paths.training_set} is missing; run the feature-store stage (or refresh) first"
        )
    frame = pd.read_parquet(paths.training_set)
    frame[TIME] = pd.to_datetime(frame[TIME], utc=True)
    return frame.sort_values([TIME, SERIES], kind="stable").reset_index(drop=True)


def trained_until(version: Any) -> pd.Timestamp:
    """The last decision time a registered ensemble version was trained on (``oof_end``)."""
    end = version.tags.get("oof_end")
    if not end:
        raise ValueError(
            f"model version {version.name}/{version.version} has no oof_end tag: cannot tell "
            "which rows it was trained on"
        )
    return pd.Timestamp(end).tz_localize("UTC") if pd.Timestamp(end).tzinfo is None \
        else pd.Timestamp(end)
