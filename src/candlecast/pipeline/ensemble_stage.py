"""`ensemble` stage: stack the zoo's out-of-fold predictions, score it out of sample, register it.

1. Reads every model's ``oof.parquet`` (``models.run``) and the regime stage's outputs; a model
   that failed in any fold is left out of the stack (named in the summary), never imputed.
2. ``stack_walk_forward``: the ensemble predicting OOF fold ``k`` is fitted on folds ``< k``
   only, from ``ensemble.min_train_folds`` on; the simple average is scored on the same rows.
3. The final ``StackedEnsemble`` is fitted on all OOF rows and bundled with the latest fold's
   base models and per-series GARCH/regime models into a :class:`ZooEnsemble` (feature rows
   in, P(up) out), logged to MLflow as a pyfunc model (signature, input example, window
   metadata) and registered as ``ensemble.registered_model``.
4. The ``champion`` alias moves to the new version only if it beats the current champion's log
   loss on the latest ``ensemble.decision_folds`` folds (:mod:`candlecast.models.champion`);
   otherwise the version gets ``challenger``. The reason is a tag on the version and the run.
   With ``ensemble.promotion: defer`` (the ops retrain flow) the version is only registered as
   ``challenger``: the ops promotion decision (backtest + significance) moves the alias.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from candlecast.common.time import naive_utc
from candlecast.config import Params
from candlecast.data.store import write_parquet_atomic
from candlecast.evaluation.metrics import log_loss
from candlecast.models import registry
from candlecast.models.champion import ChampionDecision, decide_champion, deferred_decision
from candlecast.models.ensemble_pyfunc import ZooEnsemblePyfunc
from candlecast.models.registry import MODELS
from candlecast.models.zoo_ensemble import ZooEnsemble
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import (
    ZooData,
    ZooPaths,
    finish_run,
    fold_metrics,
    fresh_dir,
    load_zoo_data,
    log_model_runs,
    metrics_config,
    write_json,
    zoo_run,
)

log = logging.getLogger(__name__)
ENSEMBLE_MODELS: tuple[str, ...] = ("ensemble", "simple_average")


def load_zoo_predictions(params: Params, zoo_paths: ZooPaths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every zoo model's OOF predictions and failures (models in ``models.run`` order)."""
    frames, failures = [], []
    for name in params.models.run:
        folder = zoo_paths.model_dir(name)
        if not (folder / "oof.parquet").exists():
            raise FileNotFoundError(
                f"{folder / 'oof.parquet'} is missing; run the train-model@{name} stage first"
            )
        frames.append(pd.read_parquet(folder / "oof.parquet"))
        failed = pd.read_csv(folder / "failures.csv")
        failures.append(failed.astype({"model": str}))
    oof = pd.concat(frames, ignore_index=True)
    return oof, pd.concat(failures, ignore_index=True)


def _extras(
    params: Params, keys: pd.DataFrame, oof: pd.DataFrame, regime: pd.DataFrame, included: list[str]
) -> tuple[pd.DataFrame | None, list[str]]:
    """Extra meta-learner inputs per key row, NaN filled causally-neutral (see docs)."""
    parts: dict[str, pd.Series] = {}
    notes = []
    joined = keys.merge(regime, on=["series", "timestamp"], how="left", validate="one_to_one")
    if "garch_vol" in params.ensemble.extras:
        vol = joined.groupby("series")["garch_vol"].ffill()
        parts["garch_vol"] = vol.fillna(vol.median()).fillna(0.0)
    if "regime" in params.ensemble.extras:
        regime_cols = sorted(c for c in regime.columns if c.startswith("regime_"))
        for col in regime_cols[1:]:  # regime_0 is implied by the others
            parts[col] = joined[col].fillna(1.0 / len(regime_cols))
    if "chronos_spread" in params.ensemble.extras:
        if "chronos" in included and "spread" in oof.columns:
            spread = keys.merge(
                oof.loc[oof["model"] == "chronos", ["series", "timestamp", "spread"]],
                on=["series", "timestamp"], how="left", validate="one_to_one",
            )["spread"]
            parts["chronos_spread"] = spread.fillna(spread.median()).fillna(0.0)
        else:
            notes.append("chronos_spread skipped: chronos is not in the stack")
    if not parts:
        return None, notes
    return pd.DataFrame(parts).reset_index(drop=True), notes


def stacking_inputs(params: Params, zoo: ZooData, zoo_paths: ZooPaths) -> dict[str, Any]:
    """The OOF matrix (one row per series and time, one column per base model) and extras."""
    oof, failures = load_zoo_predictions(params, zoo_paths)
    order = [m for name in params.models.run for m in MODELS[name].outputs(
        getattr(params.models, name))]
    failed = sorted(set(failures["model"]))
    excluded = {m: "failed in fold(s) " + ",".join(
        str(int(f)) for f in failures.loc[failures["model"] == m, "fold"]) for m in failed}
    wide = oof.pivot(index=["series", "timestamp"], columns="model", values="prob_up")
    fold_of = oof.drop_duplicates(["series", "timestamp"]).set_index(["series", "timestamp"])[
        "fold"
    ].reindex(wide.index)
    for model in order:
        if model in excluded or model not in wide.columns:
            continue
        if wide[model].isna().any():
            excluded[model] = f"missing predictions on {int(wide[model].isna().sum())} rows"
        elif (wide[model].groupby(fold_of).nunique() <= 1).all():
            # e.g. the base rate: one value per fold is a per-fold intercept, which the
            # meta-learner would fit to the few fold-to-fold shifts (spurious, out of sample)
            excluded[model] = "constant within every fold: no signal to stack"
    included = [m for m in order if m not in excluded and m in wide.columns]
    if not included:
        raise ValueError(f"no base model left to stack: {excluded}")
    keys = (
        oof.drop_duplicates(["series", "timestamp"])[["series", "timestamp", "fold", "y", "ret"]]
        .sort_values(["timestamp", "series"], kind="stable")
        .reset_index(drop=True)
    )
    probs = wide.loc[pd.MultiIndex.from_frame(keys[["series", "timestamp"]]), included]
    probs = probs.reset_index(drop=True)
    regime = pd.read_parquet(zoo_paths.regime_dir / "regime.parquet")
    extra, notes = _extras(params, keys, oof, regime, included)
    return {"keys": keys, "probs": probs, "extra": extra, "included": included,
            "excluded": excluded, "notes": notes, "oof": oof}


def run_ensemble(params: Params, paths: Paths) -> dict[str, object]:
    from candlecast.models.ensemble import OOFPredictions, StackedEnsemble, stack_walk_forward

    stacking = params.deferred("ensemble.stacking")
    zoo = load_zoo_data(params, paths)
    zoo_paths = ZooPaths(paths.root)
    inputs = stacking_inputs(params, zoo, zoo_paths)
    keys, probs, extra = inputs["keys"], inputs["probs"], inputs["extra"]
    oof = OOFPredictions.from_walk_forward(probs, keys["y"], keys["timestamp"], zoo.folds)
    started = time.perf_counter()
    oos = stack_walk_forward(oof, stacking, extra, min_train_folds=params.ensemble.min_train_folds)
    stack_seconds = time.perf_counter() - started
    final = StackedEnsemble(stacking).fit(oof, extra)
    out = fresh_dir(zoo_paths.ensemble_dir)

    rows = keys.loc[oos.index]
    predictions = pd.concat(
        [_long(rows, oos, "ensemble", "prob_up"), _long(rows, oos, "simple_average", "prob_mean")],
        ignore_index=True,
    )
    config = metrics_config(params)
    no_failures = pd.DataFrame(columns=["model", "fold", "error"])
    per_fold = fold_metrics(predictions, no_failures, config)
    fold_ids = sorted(oos["fold"].unique())
    decision_folds = fold_ids[-params.ensemble.decision_folds:]
    write_parquet_atomic(predictions, out / "oof.parquet")
    per_fold.to_csv(out / "fold_metrics.csv", index=False)
    joblib.dump(final, out / "ensemble.joblib")
    final.coefficients().rename("coefficient").to_csv(out / "coefficients.csv")
    assert final.inner_scores_ is not None
    final.inner_scores_.to_csv(out / "inner_scores.csv")
    calibration_by_fold = oos.groupby("fold")["calibration"].first().to_dict()

    run = zoo_run(params, paths, zoo)
    fold_rows = _fold_rows(zoo, fold_ids, stack_seconds)
    ids = log_model_runs(
        run, predictions=predictions, fold_rows=fold_rows, per_fold=per_fold,
        models=list(ENSEMBLE_MODELS), family=dict.fromkeys(ENSEMBLE_MODELS, "ensemble"),
        params={"base_models": ",".join(inputs["included"]),
                "excluded": str(inputs["excluded"]),
                "extras": ",".join([] if extra is None else extra.columns),
                "min_train_folds": params.ensemble.min_train_folds,
                **{f"stacking.{k}": v for k, v in stacking.model_dump().items()}},
        config=config,
    )
    finish_run(ids["simple_average"]["run_id"])

    window = predictions[(predictions["model"] == "ensemble")
                         & predictions["fold"].isin(decision_folds)]
    evaluation = {
        "eval.window": f"{window['timestamp'].min()} .. {window['timestamp'].max()}",
        "eval.folds": ",".join(str(int(f)) for f in decision_folds),
        "eval.log_loss": f"{log_loss(window['y'], window['prob_up']):.12f}",
        "eval.rows": str(len(window)),
        "eval.data_version": zoo.data_version,
        "oof_end": str(keys["timestamp"].max()),
        "pipeline_key": run.key,
    }
    bundle = build_bundle(params, zoo, zoo_paths, final, inputs)
    bundle.save(out / "serving")
    if params.ensemble.promotion == "defer":
        decision = deferred_decision(evaluation["eval.log_loss"], len(window))
    else:
        decision = _decide(params, zoo, evaluation, window)
    version = _log_and_register(params, ids["ensemble"]["run_id"], bundle, zoo, out, evaluation,
                                decision)
    summary = {
        "base_models": inputs["included"],
        "excluded": inputs["excluded"],
        "notes": inputs["notes"],
        "extras": [] if extra is None else list(extra.columns),
        "calibration": final.calibration_,
        "calibration_by_fold": {str(k): v for k, v in calibration_by_fold.items()},
        "coefficients": final.coefficients().to_dict(),
        "inner_scores": final.inner_scores_.reset_index().to_dict(orient="records"),
        "evaluated_folds": [int(f) for f in fold_ids],
        "decision_folds": [int(f) for f in decision_folds],
        "evaluation": evaluation,
        "decision": decision.__dict__,
        "registered_model": params.ensemble.registered_model,
        "registered_version": version,
        "mlflow_run_id": ids["ensemble"]["run_id"],
        "mlflow_parent_run_id": run.parent_id,
    }
    write_json(out / "summary.json", summary)
    log.info("ensemble v%s: %s (%s)", version, decision.alias, decision.reason)
    return summary


def _long(rows: pd.DataFrame, oos: pd.DataFrame, model: str, column: str) -> pd.DataFrame:
    frame = rows[["series", "timestamp", "y", "ret"]].copy()
    frame.insert(0, "fold", oos["fold"].to_numpy())
    frame.insert(0, "family", "ensemble")
    frame.insert(0, "model", model)
    frame["prob_up"] = oos[column].to_numpy()
    frame["confidence"] = oos["confidence"].to_numpy()
    frame["disagreement"] = oos["disagreement"].to_numpy()
    return frame[["model", "family", "fold", "series", "timestamp", "y", "prob_up", "ret",
                  "confidence", "disagreement"]]


def _fold_rows(zoo: ZooData, fold_ids: list[int], seconds: float) -> pd.DataFrame:
    rows = []
    for model in ENSEMBLE_MODELS:
        for fold in zoo.folds:
            if fold.index in fold_ids:
                rows.append({"model": model, **fold.describe(), "status": "ok", "error": "",
                             "fit_seconds": seconds / len(fold_ids) if model == "ensemble" else 0.0,
                             "predict_seconds": np.nan})
    return pd.DataFrame(rows)


def build_bundle(
    params: Params, zoo: ZooData, zoo_paths: ZooPaths, stacker: Any, inputs: dict[str, Any]
) -> ZooEnsemble:
    """The deployable ensemble: latest-fold base models, per-series regimes, the stacker."""
    owner = {m: name for name in params.models.run
             for m in MODELS[name].outputs(getattr(params.models, name))}
    base, context = {}, {}
    for model in stacker.models:
        folder = zoo_paths.model_dir(owner[model]) / "final" / model
        base[model] = registry.load_model(folder)
        section = getattr(params.models, owner[model])
        context[model] = MODELS[owner[model]].context_bars(section, params.label_horizon)
    window = params.ensemble.window_rows
    if window < max(context.values()) + 1:
        raise ValueError(
            f"ensemble.window_rows ({window}) must be at least the longest model context + 1 "
            f"({max(context.values()) + 1}: {context})"
        )
    regimes = joblib.load(zoo_paths.regime_dir / "final.joblib")
    extra = inputs["extra"]
    fill = {"garch_vol": 0.0, "chronos_spread": 0.0}
    if extra is not None:
        fill.update({c: float(extra[c].median()) for c in ("garch_vol", "chronos_spread")
                     if c in extra.columns})
    manifest = {
        "models": list(stacker.models),
        "extras": [] if extra is None else list(extra.columns),
        "context_bars": context,
        "window_rows": window,
        "series_column": zoo.spec.series_column,
        "time_column": zoo.spec.time_column,
        "feature_columns": list(zoo.spec.feature_columns),
        "vol_window": regimes["vol_window"],
        "trend_window": regimes["trend_window"],
        "n_regimes": int(params.deferred("regime").n_regimes),
        "fill": fill,
        "torch_threads": params.models.torch_threads,
        "label": params.train.label,
        "series": sorted(regimes["series"]),
    }
    return ZooEnsemble(base, stacker, regimes["series"], manifest)


def _decide(
    params: Params, zoo: ZooData, evaluation: dict[str, str], window: pd.DataFrame
) -> ChampionDecision:
    name = params.ensemble.registered_model
    client = MlflowClient()
    new = float(evaluation["eval.log_loss"])
    min_rows = params.ensemble.min_decision_rows
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return decide_champion(new, None, rows=len(window), min_rows=min_rows, basis="first")
    tags, version = champion.tags, str(champion.version)
    same = all(tags.get(k) == evaluation[k] for k in ("eval.window", "eval.data_version"))
    if same and "eval.log_loss" in tags:
        return decide_champion(
            new, float(tags["eval.log_loss"]), rows=len(window), min_rows=min_rows,
            basis="same-window", champion_version=version,
        )
    after = window[window["timestamp"] > pd.Timestamp(tags.get("oof_end", "2262-01-01"))]
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}") if len(after) else None
    needed = model.metadata.get_input_schema().input_names() if model is not None else []
    if model is None or any(c not in zoo.history.columns for c in needed):
        return decide_champion(new, None, rows=len(after), min_rows=min_rows,
                               basis="not-comparable", champion_version=version)
    series, time_col = zoo.spec.series_column, zoo.spec.time_column
    start = after["timestamp"].min() - params.ensemble.window_rows * zoo.spec.bar
    frame = zoo.history[(zoo.history[time_col] >= start)
                        & (zoo.history[time_col] <= after["timestamp"].max())
                        & zoo.history[series].isin(after["series"].unique())]
    frame = naive_utc(frame[needed].reset_index(drop=True), time_col)
    scored = model.predict(frame, params={"rows": "all"})
    keyed = scored.set_index([series, time_col])["prob_up"]
    champion_prob = keyed.reindex(pd.MultiIndex.from_frame(after[["series", "timestamp"]]))
    if champion_prob.isna().any():
        return decide_champion(new, None, rows=len(after), min_rows=min_rows,
                               basis="not-comparable", champion_version=version)
    return decide_champion(
        log_loss(after["y"], after["prob_up"]), log_loss(after["y"], champion_prob.to_numpy()),
        rows=len(after), min_rows=min_rows, basis="after-champion-training",
        champion_version=version,
    )


def _log_and_register(
    params: Params,
    run_id: str,
    bundle: ZooEnsemble,
    zoo: ZooData,
    out: Path,
    evaluation: dict[str, str],
    decision: ChampionDecision,
) -> str:
    import joblib as _joblib
    import sklearn
    from mlflow.models import infer_signature

    name = params.ensemble.registered_model
    series = zoo.history[zoo.spec.series_column].iloc[-1]
    rows = zoo.history[zoo.history[zoo.spec.series_column] == series]
    example = naive_utc(
        rows.tail(bundle.window_rows)[bundle.input_columns].reset_index(drop=True),
        zoo.spec.time_column,
    )
    output = bundle.predict(example)
    signature = infer_signature(example, output, params={"rows": "last"})
    example.to_parquet(out / "input_example.parquet")
    requirements = [
        f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}", f"numpy=={np.__version__}",
        f"joblib=={_joblib.__version__}",
    ]
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    for package in ("torch", "lightgbm", "chronos-forecasting", "pytorch-lightning", "arch"):
        with contextlib.suppress(PackageNotFoundError):  # not installed: not pinned
            requirements.append(f"{package}=={installed(package)}")
    with mlflow.start_run(run_id=run_id):
        for file in ("coefficients.csv", "inner_scores.csv", "fold_metrics.csv"):
            mlflow.log_artifact(str(out / file))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ZooEnsemblePyfunc(),
            artifacts={"ensemble": str(out / "serving")},
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            metadata={"candlecast": {"window_rows": bundle.window_rows,
                                     "models": bundle.manifest["models"],
                                     "label": params.train.label}},
            registered_model_name=name,
        )
        mlflow.set_tags({**evaluation, **decision.as_tags(),
                         "calibration": str(bundle.stacker.calibration_)})
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in {**evaluation, **decision.as_tags()}.items():
        client.set_model_version_tag(name, version, key, value)
    if decision.alias == "champion":
        from candlecast.tracking.aliases import move_champion

        move_champion(client, name, version, decision.reason, actor="ensemble stage")
    else:
        client.set_registered_model_alias(name, decision.alias, version)
    return version
