"""What the model-zoo stages share: paths, the training set and its folds, MLflow run layout.

Every zoo stage recomputes the same walk-forward folds from the Feast training set and the
``walk_forward`` params (cheap and deterministic), so DVC can run any stage alone.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import Params
from candlecast.data.schema import timeframe_to_timedelta
from candlecast.evaluation.metrics import METRIC_NAMES, MetricsConfig, metrics_table
from candlecast.evaluation.splits import Fold, walk_forward_splits
from candlecast.features import feature_names
from candlecast.features.cross_section import coin_feature_names, universe_feature_names
from candlecast.pipeline.paths import Paths
from candlecast.tracking import Lineage, configure_mlflow, file_digest, git_commit
from candlecast.tracking.runs import KIND_TAG, create_run, ensure_parent_run, pipeline_key
from candlecast.training.walkforward import DataSpec

log = logging.getLogger(__name__)

#: The training set's entity key and decision time (``feature_store.definitions`` JOIN_KEY and
#: EVENT_TIMESTAMP; not imported from there to keep Feast out of the model stages).
SERIES = "series_id"
TIME = "event_timestamp"


@dataclass(frozen=True)
class ZooPaths:
    """Where the zoo stages read and write, relative to the project root (mirrors dvc.yaml)."""

    root: Path

    @property
    def zoo(self) -> Path:
        return self.root / "models" / "zoo"

    def model_dir(self, name: str) -> Path:
        return self.zoo / name

    @property
    def regime_dir(self) -> Path:
        return self.zoo / "regime"

    @property
    def ensemble_dir(self) -> Path:
        return self.root / "models" / "ensemble"

    @property
    def reports(self) -> Path:
        return self.root / "reports" / "models"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics" / "models"

    @property
    def plots(self) -> Path:
        return self.root / "plots" / "models"


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (a stage owns its outputs: a rerun must not see the previous run's files)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


@dataclass(frozen=True)
class ZooData:
    """The labelled rows the models train and test on, all rows (context), folds, columns.

    ``data``, ``folds`` and ``spec`` are those of ``train.label``'s horizon; :meth:`horizon`
    gives any zoo horizon's rows, folds (the same fold windows, purged by the longest horizon)
    and label columns.
    """

    data: pd.DataFrame
    history: pd.DataFrame
    folds: list[Fold]
    spec: DataSpec
    data_version: str
    horizons: tuple[int, ...] = (1,)

    def horizon(self, h: int) -> tuple[pd.DataFrame, list[Fold], DataSpec]:
        """Rows labelled at horizon ``h``, the folds restricted to them, and the spec naming
        ``label_up_<h>`` / ``fwd_logret_<h>``."""
        if h not in self.horizons:
            raise ValueError(f"horizon {h} is not a zoo horizon {list(self.horizons)}")
        label, target = label_columns(h)
        keep = self.data[label].notna().to_numpy()
        return (self.data[keep].reset_index(drop=True), restrict_folds(self.folds, keep),
                replace(self.spec, label=label, target_return=target))


def label_columns(h: int) -> tuple[str, str]:
    """The direction label and forward log return of horizon ``h``."""
    return f"label_up_{h}", f"fwd_logret_{h}"


def restrict_folds(folds: Sequence[Fold], keep: np.ndarray) -> list[Fold]:
    """``folds`` over the rows where ``keep`` is True, renumbered to those rows (the fold
    windows stay the same)."""
    new_index = np.cumsum(keep) - 1
    return [Fold(f.index, new_index[f.train[keep[f.train]]], new_index[f.test[keep[f.test]]],
                 f.train_start, f.train_end, f.test_start, f.test_end) for f in folds]


def model_feature_names(params: Params) -> list[str]:
    """The model inputs: the candle features, plus on the portfolio path the coin's and the
    universe's cross-sectional features (the pooled model's feature service)."""
    names = list(feature_names(params.features))
    if params.cross_section.enabled:
        names += [*coin_feature_names(params.cross_section),
                  *universe_feature_names(params.cross_section)]
    return names


def training_feature_service(params: Params) -> str:
    """The Feast service the training set was built from (lineage)."""
    if params.cross_section.enabled:
        return params.cross_section.feature_service
    return params.feature_store.feature_service


def load_zoo_data(params: Params, paths: Paths) -> ZooData:
    """The Feast training set sorted by time, its label-complete rows and the purged folds.

    Purging follows real time: a row's label ends ``horizon`` bars after its decision time.
    Fails (before any training) if the data is too short for the walk-forward layout.
    """
    dataset = pd.read_parquet(paths.training_set)
    names = tuple(model_feature_names(params))
    label, target = params.train.label, params.train.target_return
    labels = [c for h in params.models.horizons for c in label_columns(h)]
    missing = [c for c in (SERIES, TIME, *names, label, target, *labels)
               if c not in dataset.columns]
    if missing:
        raise ValueError(f"training set {paths.training_set} lacks columns {missing}")
    history = dataset.sort_values([TIME, SERIES], kind="stable").reset_index(drop=True)
    history = history[[SERIES, TIME, *names, *dict.fromkeys([label, target, *labels])]]
    data = history[history[label].notna()].reset_index(drop=True)
    bar = timeframe_to_timedelta(params.ingest.timeframe)
    purge = params.zoo_horizon  # one fold layout for every horizon: purged by the longest
    config = params.walk_forward_config()
    try:
        folds = walk_forward_splits(data[TIME], config, label_end=data[TIME] + purge * bar)
    except ValueError as exc:
        raise ValueError(f"walk_forward on {paths.training_set}: {exc}") from exc
    spec = DataSpec(names, label, target, SERIES, TIME, bar=bar)
    return ZooData(data, history, folds, spec, file_digest(paths.training_set),
                   tuple(params.models.horizons))


def metrics_config(params: Params) -> MetricsConfig:
    return MetricsConfig(
        cost_bps=params.evaluate.cost_bps, calibration_bins=params.evaluate.calibration_bins
    )


def lineage(params: Params, paths: Paths, data_version: str) -> Lineage:
    return Lineage(
        data_version=data_version,
        params_hash=params.hash(),
        git_commit=git_commit(paths.root),
        feature_service=training_feature_service(params),
    )


@dataclass(frozen=True)
class ZooRun:
    """The MLflow experiment and the pipeline's parent run the zoo stages nest under."""

    experiment_id: str
    parent_id: str
    key: str
    tags: dict[str, str]


def zoo_run(params: Params, paths: Paths, zoo: ZooData) -> ZooRun:
    """Set up MLflow and find (or create) this pipeline run's parent run."""
    settings = params.mlflow
    experiment_id = configure_mlflow(
        settings.tracking_uri, settings.artifact_root, settings.experiment, paths.root
    )
    key = pipeline_key(
        data=zoo.data_version,
        label=params.train.label,
        target=params.train.target_return,
        walk_forward=params.walk_forward.model_dump(mode="json"),
    )
    tags = lineage(params, paths, zoo.data_version).as_tags()
    boundaries = {
        f"fold{f.index}.test": f"{f.test_start} .. {f.test_end}" for f in zoo.folds
    }
    parent = ensure_parent_run(
        experiment_id,
        key,
        name=f"walk-forward {key}",
        tags={**tags, "label": params.train.label, "n_folds": str(len(zoo.folds))},
        params={
            **{f"walk_forward.{k}": v for k, v in params.walk_forward.model_dump().items()},
            "label": params.train.label,
            "horizon": params.label_horizon,
            "horizons": ",".join(str(h) for h in params.models.horizons),
            "data_version": zoo.data_version,
            "rows": len(zoo.data),
            **boundaries,
        },
    )
    return ZooRun(experiment_id, parent, key, tags)


def flatten(prefix: str, values: Any) -> dict[str, Any]:
    """Nested mappings as ``prefix.key`` entries (for MLflow params)."""
    if isinstance(values, Mapping):
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: values}


def log_model_runs(
    run: ZooRun,
    *,
    predictions: pd.DataFrame,
    fold_rows: pd.DataFrame,
    per_fold: pd.DataFrame,
    models: Sequence[str],
    family: dict[str, str],
    params: Mapping[str, Any],
    config: MetricsConfig,
    extra_tags: Mapping[str, str] | None = None,
    horizon: int | None = None,
) -> dict[str, dict[str, Any]]:
    """One MLflow run per model (pooled metrics) with a nested run per fold; returns run ids.

    ``fold_rows`` is the walk-forward fold table (``model, fold, status, error, fit_seconds,
    ...``); a failed fold becomes a FAILED run carrying its error. With ``horizon`` the runs
    are named ``<model> h<horizon>`` and tagged ``horizon``.
    """
    suffix = "" if horizon is None else f" h{horizon}"
    if horizon is not None:
        extra_tags = {**dict(extra_tags or {}), "horizon": str(horizon)}
    ids: dict[str, dict[str, Any]] = {}
    pooled = (
        metrics_table(predictions, ("model",), config=config).set_index("model")
        if len(predictions)
        else pd.DataFrame()
    )
    for model in models:
        rows = fold_rows[fold_rows["model"] == model]
        failed = rows[rows["status"] == "failed"]
        tags = {
            KIND_TAG: "model", "model": model, "model_family": family.get(model, ""),
            "fold": "all", **run.tags, **dict(extra_tags or {}),
        }
        metrics: dict[str, Any] = (
            pooled.loc[model, list(METRIC_NAMES)].to_dict() if model in pooled.index else {}
        )
        ok = per_fold[(per_fold["model"] == model) & (per_fold["status"] == "ok")]
        metrics.update(
            n_folds=float(len(rows)),
            n_failed_folds=float(len(failed)),
            log_loss_fold_std=float(ok["log_loss"].std(ddof=1)) if len(ok) > 1 else np.nan,
            fit_seconds_total=float(rows["fit_seconds"].sum()),
        )
        model_run = create_run(
            run.experiment_id, run.parent_id, f"{model}{suffix}",
            {**tags, "failed_folds": ",".join(str(int(f)) for f in failed["fold"])},
            params=params, metrics=metrics, terminate=False,
        )
        fold_ids = {}
        for _, row in rows.iterrows():
            fold = int(row["fold"])
            fold_metrics = per_fold[(per_fold["model"] == model) & (per_fold["fold"] == fold)]
            values = (
                fold_metrics.iloc[0][list(METRIC_NAMES)].to_dict() if len(fold_metrics) else {}
            )
            values.update({
                k: row[k] for k in row.index
                if k in ("fit_seconds", "predict_seconds", "n_train", "n_test")
                or str(k).startswith("info.")
            })
            fold_ids[fold] = create_run(
                run.experiment_id, model_run, f"{model}{suffix} fold {fold}",
                {**tags, KIND_TAG: "fold", "fold": str(fold), "status": row["status"],
                 "error": str(row["error"])[:5000]},
                params={k: row[k] for k in ("train_start", "train_end", "test_start", "test_end")
                        if k in row.index},
                metrics=values,
                status="FAILED" if row["status"] == "failed" else "FINISHED",
            )
        ids[model] = {"run_id": model_run, "folds": fold_ids}
    return ids


def log_stage_run(params: Params, paths: Paths, name: str, tags: Mapping[str, str],
                  run_params: Mapping[str, Any], metrics: Mapping[str, Any],
                  artifacts: Sequence[Path]) -> str | None:
    """A finished MLflow run ``name`` under this pipeline's parent run (the ensemble's), with
    ``artifacts`` logged; None when the zoo has not run (no parent)."""
    summary = ZooPaths(paths.root).ensemble_dir / "summary.json"
    if not summary.exists():
        return None
    parent = json.loads(summary.read_text()).get("mlflow_parent_run_id")
    if not parent:
        return None
    s = params.mlflow
    experiment = configure_mlflow(s.tracking_uri, s.artifact_root, s.experiment, paths.root)
    run_id = create_run(experiment, parent, name, tags, params=run_params, metrics=metrics,
                        terminate=False)
    import mlflow

    with mlflow.start_run(run_id=run_id):
        for path in artifacts:
            mlflow.log_artifact(str(path))
    finish_run(run_id)
    return run_id


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient().set_terminated(run_id, status=status)


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def fold_metrics(
    predictions: pd.DataFrame, failures: pd.DataFrame, config: MetricsConfig
) -> pd.DataFrame:
    """Per model and fold metrics with failed folds as ``status='failed'`` rows."""
    if len(predictions) == 0:
        return metrics_table(
            pd.DataFrame({"model": [], "fold": [], "y": [], "prob_up": []}),
            ("model", "fold"), config=config, failures=failures,
        )
    return metrics_table(predictions, ("model", "fold"), config=config, failures=failures)
