"""MLflow run layout of the model zoo: one parent run per pipeline run, nested children.

DVC runs every stage in its own process, so the stages agree on their parent run through a
key rather than a shared handle: the *pipeline key* hashes what makes model results comparable
(the training-set version, the label and the walk-forward layout). The first zoo stage of a
pipeline run creates the parent run tagged with that key; every later stage finds it by the tag
and nests its runs under it. Re-running one model with other hyperparameters on the same data
and folds adds a sibling run under the same parent, so the MLflow UI compares like with like.

Layout (tags on every run: ``candlecast.kind``, ``model``, ``model_family``, ``fold``)::

    walk-forward <key>                kind=pipeline
      <model>                         kind=model   fold=all   pooled out-of-sample metrics
        <model> fold <k>              kind=fold    fold=<k>   that fold's metrics
          <model> fold <k> trial <n>  kind=trial   (LightGBM's Optuna trials)
      ensemble / simple_average       kind=model   (+ fold runs), registered model version
      compare                         kind=compare (tables and plots)

Metric names are :data:`candlecast.evaluation.metrics.METRIC_NAMES` at every level.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

KIND_TAG = "candlecast.kind"
PIPELINE_KEY_TAG = "candlecast.pipeline_key"


def pipeline_key(**parts: Any) -> str:
    """A short stable hash of the things that make results comparable."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def finite(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of ``values`` as floats (MLflow metrics skip NaN/None)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


def ensure_parent_run(
    experiment_id: str, key: str, name: str, tags: Mapping[str, str], params: Mapping[str, Any]
) -> str:
    """The id of the pipeline run with ``key`` in the experiment, created if absent."""
    client = MlflowClient()
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}' and tags.`{KIND_TAG}` = 'pipeline'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={KIND_TAG: "pipeline", PIPELINE_KEY_TAG: key, **dict(tags)},
    )
    log_run(run.info.run_id, params=params)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def create_run(
    experiment_id: str,
    parent_id: str,
    name: str,
    tags: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    status: str = "FINISHED",
    terminate: bool = True,
) -> str:
    """A run nested under ``parent_id`` with tags, params and metrics in one batch."""
    client = MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={MLFLOW_PARENT_RUN_ID: parent_id, **{k: str(v) for k, v in tags.items()}},
    )
    log_run(run.info.run_id, params=params, metrics=metrics)
    if terminate:
        client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def log_run(
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    step: int = 0,
) -> None:
    """Log params (values cut to 6000 characters), finite metrics and tags in one batch."""
    client = MlflowClient()
    now = _now_ms()
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, step) for k, v in finite(metrics or {}).items()],
        params=[Param(str(k), str(v)[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(str(k), str(v)) for k, v in (tags or {}).items() if k != MLFLOW_RUN_NAME],
    )


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

