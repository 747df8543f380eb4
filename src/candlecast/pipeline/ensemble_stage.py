"""`ensemble` stage: per horizon, stack the zoo's out-of-fold predictions, score the stack out of
sample, bundle the deployable :class:`~candlecast.models.ensemble.Ensemble`.

For every horizon ``h`` of ``models.horizons``:

1. reads the OOF predictions of every model trained for ``h`` (``models/zoo/<name>/oof.parquet``,
   rows of that horizon) and the regime stage's outputs; a model that failed in any fold is
   left out of the stack (named in the summary), never imputed;
2. ``stack_walk_forward``: the stack predicting OOF fold ``k`` is fitted on folds ``< k`` only,
   from ``ensemble.min_train_folds`` on, with the expected-return scale fitted on the same
   earlier folds (:func:`~candlecast.models.stacking.fit_return_scale`); the simple average is
   scored on the same rows;
3. the final :class:`~candlecast.models.stacking.Stacker` is fitted on all OOF rows of ``h``.

Outputs (``models/ensemble/``): ``oof.parquet`` (long: ``model`` ensemble|simple_average,
``horizon``, ``fold``, ``series``, ``timestamp``, ``y``, ``prob_up``, ``ret``, ``exp_ret``,
``volatility``, ...: every row predicted out of sample), ``fold_metrics.csv``,
``h<h>/{coefficients,inner_scores}.csv``, ``serving/`` (the bundle, without a policy yet: the
``policy`` stage chooses it, the ``register`` stage adds it and registers the model) and
``summary.json``. MLflow: an ``ensemble h<h>`` and ``simple_average h<h>`` run per horizon.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import joblib
import numpy as np
import pandas as pd

from candlecast.config import Params
from candlecast.data.store import write_parquet_atomic
from candlecast.evaluation.splits import Fold
from candlecast.models import registry
from candlecast.models.ensemble import Ensemble, HorizonEnsemble
from candlecast.models.registry import MODELS
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
OOF_COLUMNS: tuple[str, ...] = (
    "model", "family", "horizon", "fold", "series", "timestamp", "y", "prob_up", "ret",
    "exp_ret", "volatility", "confidence", "disagreement",
)


def load_zoo_predictions(params: Params, zoo_paths: ZooPaths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every zoo model's OOF predictions and failures (models in ``models.run`` order), rows of
    the horizons each model is configured for (``models.model_horizons``)."""
    frames, failures = [], []
    for name in params.models.run:
        folder = zoo_paths.model_dir(name)
        if not (folder / "oof.parquet").exists():
            raise FileNotFoundError(
                f"{folder / 'oof.parquet'} is missing; run the train-model@{name} stage first"
            )
        horizons = list(params.models.horizons_of(name))
        frame = pd.read_parquet(folder / "oof.parquet")
        if "horizon" not in frame.columns:
            raise ValueError(f"{folder / 'oof.parquet'} has no horizon column; rerun "
                             f"train-model@{name}")
        missing = sorted(set(horizons) - set(frame["horizon"].unique()))
        if missing:
            raise ValueError(f"{folder / 'oof.parquet'} lacks horizons {missing}; rerun "
                             f"train-model@{name}")
        frames.append(frame[frame["horizon"].isin(horizons)])
        failed = pd.read_csv(folder / "failures.csv").astype({"model": str})
        failures.append(failed[failed["horizon"].isin(horizons)])
    return pd.concat(frames, ignore_index=True), pd.concat(failures, ignore_index=True)


def garch_volatility(keys: pd.DataFrame, regime: pd.DataFrame) -> pd.Series:
    """The GARCH one-bar vol forecast per key row (``series, timestamp``): carried forward
    within a series, then the median, as the ``garch_vol`` extra."""
    joined = keys[["series", "timestamp"]].merge(regime[["series", "timestamp", "garch_vol"]],
                                                 on=["series", "timestamp"], how="left",
                                                 validate="one_to_one")
    vol = joined.groupby("series")["garch_vol"].ffill()
    return vol.fillna(vol.median()).fillna(0.0).reset_index(drop=True)


def _extras(
    params: Params, keys: pd.DataFrame, oof: pd.DataFrame, regime: pd.DataFrame, included: list[str]
) -> tuple[pd.DataFrame | None, list[str]]:
    """Extra meta-learner inputs per key row, NaN filled causally-neutral (see docs)."""
    parts: dict[str, pd.Series] = {}
    notes = []
    joined = keys.merge(regime, on=["series", "timestamp"], how="left", validate="one_to_one")
    if "garch_vol" in params.ensemble.extras:
        parts["garch_vol"] = garch_volatility(keys, regime)
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


def stacking_inputs(params: Params, horizon: int, oof: pd.DataFrame, failures: pd.DataFrame,
                    regime: pd.DataFrame) -> dict[str, Any]:
    """One horizon's OOF matrix (a row per series and time, a column per base model), its key
    rows (``series, timestamp, fold, y, ret``), extras and the GARCH vol per row."""
    oof = oof[oof["horizon"] == horizon]
    failures = failures[failures["horizon"] == horizon]
    order = [m for name in params.models.run if horizon in params.models.horizons_of(name)
             for m in MODELS[name].outputs(getattr(params.models, name))]
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
        raise ValueError(f"horizon {horizon}: no base model left to stack: {excluded}")
    keys = (
        oof.drop_duplicates(["series", "timestamp"])[["series", "timestamp", "fold", "y", "ret"]]
        .sort_values(["timestamp", "series"], kind="stable")
        .reset_index(drop=True)
    )
    probs = wide.loc[pd.MultiIndex.from_frame(keys[["series", "timestamp"]]), included]
    probs = probs.reset_index(drop=True)
    extra, notes = _extras(params, keys, oof, regime, included)
    return {"keys": keys, "probs": probs, "extra": extra, "included": included,
            "excluded": excluded, "notes": notes, "oof": oof,
            "volatility": garch_volatility(keys, regime).to_numpy(dtype=float)}


def run_ensemble(params: Params, paths: Paths) -> dict[str, object]:
    from candlecast.models.stacking import OOFPredictions, Stacker, stack_walk_forward

    base_config = params.deferred("ensemble.stacking")
    zoo = load_zoo_data(params, paths)
    zoo_paths = ZooPaths(paths.root)
    oof_all, failures_all = load_zoo_predictions(params, zoo_paths)
    regime = pd.read_parquet(zoo_paths.regime_dir / "regime.parquet")
    out = fresh_dir(zoo_paths.ensemble_dir)
    run = zoo_run(params, paths, zoo)
    config = metrics_config(params)
    no_failures = pd.DataFrame(columns=["model", "fold", "error"])
    members: dict[int, HorizonEnsemble] = {}
    scales: dict[str, float] = {}
    predictions, metric_tables, by_horizon = [], [], {}
    vol_fill = float(regime["garch_vol"].median())
    for horizon in params.models.horizons:
        stacking = base_config.model_copy(update={"horizon": horizon})
        _, folds, _ = zoo.horizon(horizon)
        inputs = stacking_inputs(params, horizon, oof_all, failures_all, regime)
        keys, probs, extra, vol = (inputs["keys"], inputs["probs"], inputs["extra"],
                                   inputs["volatility"])
        ret = keys["ret"].to_numpy(dtype=float)
        oof = OOFPredictions.from_walk_forward(probs, keys["y"], keys["timestamp"], folds)
        started = time.perf_counter()
        oos = stack_walk_forward(oof, stacking, extra,
                                 min_train_folds=params.ensemble.min_train_folds,
                                 returns=ret, volatility=vol)
        stack_seconds = time.perf_counter() - started
        final = Stacker(stacking).fit(oof, extra)
        scales[str(horizon)] = final.return_scale(ret, vol)
        rows = keys.loc[oos.index]
        long = pd.concat([_long(rows, oos, "ensemble", "prob_up", horizon, vol[oos.index]),
                          _long(rows, oos, "simple_average", "prob_mean", horizon,
                                vol[oos.index])], ignore_index=True)
        predictions.append(long)
        per_fold = fold_metrics(long.drop(columns=["horizon"]), no_failures, config)
        per_fold.insert(0, "horizon", horizon)
        metric_tables.append(per_fold)
        fold_ids = sorted(oos["fold"].unique())
        ids = log_model_runs(
            run, predictions=long, fold_rows=_fold_rows(folds, fold_ids, stack_seconds),
            per_fold=per_fold.drop(columns=["horizon"]), models=list(ENSEMBLE_MODELS),
            family=dict.fromkeys(ENSEMBLE_MODELS, "ensemble"),
            params={"base_models": ",".join(inputs["included"]),
                    "excluded": str(inputs["excluded"]),
                    "extras": ",".join([] if extra is None else extra.columns),
                    "min_train_folds": params.ensemble.min_train_folds,
                    "return_scale": scales[str(horizon)],
                    **{f"stacking.{k}": v for k, v in stacking.model_dump().items()}},
            config=config, horizon=horizon,
        )
        finish_run(ids["simple_average"]["run_id"])
        folder = out / f"h{horizon}"
        folder.mkdir()
        final.coefficients().rename("coefficient").to_csv(folder / "coefficients.csv")
        assert final.inner_scores_ is not None
        final.inner_scores_.to_csv(folder / "inner_scores.csv")
        members[horizon] = build_member(params, zoo, zoo_paths, final, inputs, horizon)
        by_horizon[str(horizon)] = {
            "base_models": inputs["included"],
            "excluded": inputs["excluded"],
            "notes": inputs["notes"],
            "extras": [] if extra is None else list(extra.columns),
            "calibration": final.calibration_,
            "calibration_by_fold": {str(k): v for k, v in
                                    oos.groupby("fold")["calibration"].first().items()},
            "return_scale": scales[str(horizon)],
            "return_scale_by_fold": {str(k): float(v) for k, v in
                                     oos.groupby("fold")["return_scale"].first().items()},
            "coefficients": final.coefficients().to_dict(),
            "evaluated_folds": [int(f) for f in fold_ids],
            "mlflow_run_id": ids["ensemble"]["run_id"],
        }
    table = pd.concat(predictions, ignore_index=True)
    write_parquet_atomic(table, out / "oof.parquet")
    pd.concat(metric_tables, ignore_index=True).to_csv(out / "fold_metrics.csv", index=False)
    primary = params.label_horizon
    bundle = Ensemble(members, {
        "horizons": list(params.models.horizons), "primary_horizon": primary,
        "return_scale": scales, "vol_fill": vol_fill, "policy": None,
        "costs": params.costs.model_dump(mode="json"), "label": params.train.label,
    })
    bundle.save(out / "serving")
    summary = {
        "horizons": list(params.models.horizons),
        "primary_horizon": primary,
        "by_horizon": by_horizon,
        "return_scale": scales,
        "oof_end": str(table["timestamp"].max()),
        "data_version": zoo.data_version,
        "mlflow_run_id": by_horizon[str(primary)]["mlflow_run_id"],
        "mlflow_parent_run_id": run.parent_id,
        "pipeline_key": run.key,
    }
    write_json(out / "summary.json", summary)
    log.info("ensemble: horizons %s, return scales %s", list(params.models.horizons), scales)
    return summary


def _long(rows: pd.DataFrame, oos: pd.DataFrame, model: str, column: str, horizon: int,
          vol: np.ndarray) -> pd.DataFrame:
    from candlecast.models.stacking import expected_return

    frame = rows[["series", "timestamp", "y", "ret"]].copy()
    frame.insert(0, "fold", oos["fold"].to_numpy())
    frame.insert(0, "horizon", horizon)
    frame.insert(0, "family", "ensemble")
    frame.insert(0, "model", model)
    frame["prob_up"] = oos[column].to_numpy()
    scale = oos["return_scale"].to_numpy()  # fitted on the earlier folds, for both models
    frame["exp_ret"] = scale * expected_return(frame["prob_up"].to_numpy(), vol, horizon, 1.0)
    frame["volatility"] = vol
    frame["confidence"] = oos["confidence"].to_numpy()
    frame["disagreement"] = oos["disagreement"].to_numpy()
    return frame[list(OOF_COLUMNS)]


def _fold_rows(folds: list[Fold], fold_ids: list[int], seconds: float) -> pd.DataFrame:
    rows = []
    for model in ENSEMBLE_MODELS:
        for fold in folds:
            if fold.index in fold_ids:
                rows.append({"model": model, **fold.describe(), "status": "ok", "error": "",
                             "fit_seconds": seconds / len(fold_ids) if model == "ensemble" else 0.0,
                             "predict_seconds": np.nan})
    return pd.DataFrame(rows)


def build_member(
    params: Params, zoo: ZooData, zoo_paths: ZooPaths, stacker: Any, inputs: dict[str, Any],
    horizon: int,
) -> HorizonEnsemble:
    """One horizon's deployable stack: its latest-fold base models, per-series regimes, the
    stacker."""
    owner = {m: name for name in params.models.run
             for m in MODELS[name].outputs(getattr(params.models, name))}
    base, context = {}, {}
    for model in stacker.models:
        folder = zoo_paths.model_dir(owner[model]) / "final" / f"h{horizon}" / model
        base[model] = registry.load_model(folder)
        section = getattr(params.models, owner[model])
        context[model] = MODELS[owner[model]].context_bars(section, horizon)
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
        "horizon": horizon,
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
        "label": f"label_up_{horizon}",
        "series": sorted(regimes["series"]),
    }
    return HorizonEnsemble(base, stacker, regimes["series"], manifest)
