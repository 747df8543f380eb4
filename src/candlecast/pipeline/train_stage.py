"""`train` stage: LightGBM direction classifier on a chronological hold-out, tracked in MLflow."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from tqdm.auto import tqdm

from candlecast.config import Params
from candlecast.data.store import write_parquet_atomic
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.features import feature_names
from candlecast.models.lightgbm_fit import fit_lightgbm_direction
from candlecast.pipeline.paths import Paths
from candlecast.tracking import Lineage, configure_mlflow, file_digest, git_commit
from candlecast.training.holdout import Holdout, chronological_holdout

log = logging.getLogger(__name__)


def lineage_for(params: Params, paths: Paths) -> Lineage:
    return Lineage(
        data_version=file_digest(paths.training_set),
        params_hash=params.hash(),
        git_commit=git_commit(paths.root),
        feature_service=params.feature_store.feature_service,
    )


def load_training_set(params: Params, paths: Paths) -> tuple[pd.DataFrame, list[str]]:
    """The Feast training set, rows with an undefined label (dead zone, gap, end) removed."""
    dataset = pd.read_parquet(paths.training_set)
    names = feature_names(params.features)
    label = params.train.label
    for col in (*names, label, params.train.target_return):
        if col not in dataset.columns:
            raise ValueError(f"training set {paths.training_set} has no column {col!r}")
    dataset = dataset[dataset[label].notna()].reset_index(drop=True)
    return dataset, names


def run_train(params: Params, paths: Paths) -> dict[str, object]:
    cfg = params.train
    dataset, names = load_training_set(params, paths)
    horizon = max(params.labels.horizons)
    parts = chronological_holdout(
        dataset[EVENT_TIMESTAMP], cfg.split.train, cfg.split.val, purge=horizon
    )
    X, y = dataset[names], dataset[cfg.label]
    lgb_params = cfg.lightgbm.model_dump(exclude={"early_stopping_rounds"})

    configure_mlflow(
        params.mlflow.tracking_uri,
        params.mlflow.artifact_root,
        params.mlflow.experiment,
        paths.root,
    )
    lineage = lineage_for(params, paths)
    out_dir = paths.lightgbm_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(run_name="lightgbm-holdout") as run:
        mlflow.set_tags({"model_family": "lightgbm", "stage": "train", **lineage.as_tags()})
        mlflow.log_params({f"lgbm.{k}": v for k, v in lgb_params.items()})
        mlflow.log_params(
            {
                "label": cfg.label,
                "seed": cfg.seed,
                "n_features": len(names),
                "split.train": cfg.split.train,
                "split.val": cfg.split.val,
                "purge": horizon,
                **{f"boundary.{k}": v for k, v in parts.boundaries.items()},
            }
        )
        bar = tqdm(total=cfg.lightgbm.n_estimators, desc="lightgbm", unit="tree", leave=False)

        def progress(iteration: int, val_loss: float) -> None:
            bar.update(1)
            bar.set_postfix(val_logloss=f"{val_loss:.5f}")

        fit = fit_lightgbm_direction(
            X.iloc[parts.train],
            y.iloc[parts.train],
            X.iloc[parts.val],
            y.iloc[parts.val],
            params=lgb_params,
            early_stopping_rounds=cfg.lightgbm.early_stopping_rounds,
            seed=cfg.seed,
            on_iteration=progress,
        )
        bar.close()
        for step, value in enumerate(fit.eval_log_loss, start=1):
            mlflow.log_metric("val_log_loss_curve", value, step=step)
        mlflow.log_metric("best_iteration", fit.best_iteration)
        mlflow.log_metric("val_log_loss", float(fit.eval_log_loss[fit.best_iteration - 1]))

        example = X.iloc[parts.train[:5]]
        signature = infer_signature(example, np.asarray(fit.model.predict_proba(example))[:, 1])
        mlflow.lightgbm.log_model(
            fit.model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=params.mlflow.registered_model,
            # pinned from the running environment: MLflow's inference would load the model in a
            # subprocess to discover them (tens of seconds on a busy machine)
            pip_requirements=_pip_requirements(),
        )
        mlflow.log_dict({"features": names}, "feature_list.json")
        fit.model.booster_.save_model(str(out_dir / "model.txt"), num_iteration=fit.best_iteration)

        predictions = _predictions(
            dataset,
            parts,
            np.asarray(fit.model.predict_proba(X))[:, 1],
            cfg.label,
            cfg.target_return,
        )
        write_parquet_atomic(predictions, out_dir / "predictions.parquet")
        importance = pd.DataFrame(
            {
                "feature": names,
                "gain": fit.model.booster_.feature_importance(importance_type="gain"),
            }
        ).sort_values("gain", ascending=False)
        importance.to_csv(out_dir / "feature_importance.csv", index=False)
        summary = {
            "mlflow_run_id": run.info.run_id,
            "mlflow_experiment_id": run.info.experiment_id,
            "best_iteration": fit.best_iteration,
            "train_rows": int(len(parts.train)),
            "val_rows": int(len(parts.val)),
            "test_rows": int(len(parts.test)),
            "train_base_rate": float(y.iloc[parts.train].mean()),
            "boundaries": parts.boundaries,
            "features": names,
            "lineage": lineage.__dict__,
        }
        _write_json(out_dir / "train_summary.json", summary)
        mlflow.log_dict(summary, "train_summary.json")
    return summary


def _predictions(
    dataset: pd.DataFrame, parts: Holdout, prob: np.ndarray, label: str, target: str
) -> pd.DataFrame:
    split = np.full(len(dataset), "", dtype=object)
    split[parts.train], split[parts.val], split[parts.test] = "train", "val", "test"
    out = dataset[[JOIN_KEY, EVENT_TIMESTAMP]].copy()
    out["split"] = split
    out["prob_up"] = prob
    out["label"] = dataset[label]
    out["fwd_return"] = dataset[target]
    return out[out["split"] != ""].reset_index(drop=True)


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}"
            for name in ("mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "scipy")]
