"""`regime` stage: GARCH(1,1) volatility and Gaussian-mixture regimes, per series and fold.

For every walk-forward fold and series, GARCH is estimated on that series' training returns
only and its frozen parameters filter the whole series (the value at a row uses returns up to
that row); the regime mixture is fitted on the training rows' (log volatility, trend) and
labels the test rows. Output: one row per test row with ``garch_vol``, ``regime_<k>``
probabilities and the hard ``regime`` label (0 = calmest): extra inputs of the ensemble and the
grouping of the per-regime metrics. The regime inputs come from the Feast features:
``log_vol = log(rv_<vol_window>)``, ``trend = logret_<trend_window> / (rv * sqrt(window))``
(the definitions of ``models.regime.regime_features``, with the realized-volatility feature).

This is the first zoo stage: it validates every deferred params section before any training.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

from candlecast.compute import run_units
from candlecast.config import Params, check_deferred
from candlecast.data.store import write_parquet_atomic
from candlecast.models.base_predictions import regime_inputs
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import (
    SERIES,
    TIME,
    ZooData,
    ZooPaths,
    fresh_dir,
    load_zoo_data,
    write_json,
    zoo_run,
)
from candlecast.tracking.runs import KIND_TAG, create_run

log = logging.getLogger(__name__)


#: one unit of the stage: fold index, series id, the series' feature rows (by decision time),
#: the decision times of its training and test rows in the fold
RegimeUnit = tuple[int, str, pd.DataFrame, pd.Series, pd.Series]


def regime_units(zoo: ZooData, history: pd.DataFrame) -> list[RegimeUnit]:
    """Every (fold, series) with test rows, oldest fold first, series sorted."""
    by_series = {str(s): rows.set_index(TIME) for s, rows in history.groupby(SERIES, sort=True)}
    units = []
    for fold in zoo.folds:
        train, test = zoo.data.iloc[fold.train], zoo.data.iloc[fold.test]
        for series, rows in by_series.items():
            test_t = test.loc[test[SERIES] == series, TIME]
            if len(test_t):
                units.append(
                    (fold.index, series, rows, train.loc[train[SERIES] == series, TIME], test_t)
                )
    return units


def fit_series_fold(
    garch_config: Any, regime_config: Any, unit: RegimeUnit
) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """GARCH and the regime mixture of one series fitted on one fold's training rows, applied
    to its test rows: the test rows' frame, the GARCH row, the regime summary, the models."""
    from candlecast.models.regime import GarchVolatility, GaussianRegimes

    fold, series, rows, train_t, test_t = unit
    # one BLAS thread, as in a task-runner worker: the GARCH optimum is then bit-identical
    # wherever the unit runs (BLAS sums in a thread-count-dependent order)
    with threadpool_limits(limits=1):
        garch = GarchVolatility(garch_config).fit(rows.loc[train_t, "logret_1"])
        vol = garch.forecast(rows["logret_1"])
    regimes = GaussianRegimes(regime_config).fit(rows.loc[train_t, ["log_vol", "trend"]])
    inputs = rows.loc[test_t, ["log_vol", "trend"]]
    frame = regimes.predict_proba(inputs)
    frame["regime"] = regimes.predict(inputs)
    frame.insert(0, "garch_vol", vol.loc[test_t].to_numpy())
    frame.insert(0, "fold", fold)
    frame.insert(0, "series", series)
    frame = frame.reset_index().rename(columns={TIME: "timestamp"})
    garch_row = {"fold": fold, "series": series, **(garch.params_ or {}),
                 "persistence": garch.persistence, "converged": garch.converged_}
    summary = regimes.summary().reset_index()
    summary.insert(0, "series", series)
    summary.insert(0, "fold", fold)
    return frame, garch_row, summary, {"garch": garch, "regimes": regimes}


def run_regime(params: Params, paths: Paths) -> dict[str, object]:
    check_deferred(params)
    garch_config, regime_config = params.deferred("garch"), params.deferred("regime")
    zoo = load_zoo_data(params, paths)
    out = fresh_dir(ZooPaths(paths.root).regime_dir)
    history = zoo.history.copy()
    history = history.join(
        regime_inputs(history, regime_config.vol_window, regime_config.trend_window)
    )
    # regime inputs need rv_<w> and logret_<w>: the loaded frame has only the model features,
    # which include them (checked at params load)
    units = regime_units(zoo, history)
    results = run_units(
        partial(fit_series_fold, garch_config, regime_config), units, params.compute,
        name="regime", label=lambda unit: f"fold{unit[0]}-{unit[1]}",
    )
    frames, garch_rows, summaries = [], [], []
    final: dict[str, dict[str, object]] = {}
    for frame, garch_row, summary, models in results:  # fold, then series order
        frames.append(frame)
        garch_rows.append(garch_row)
        summaries.append(summary)
        final[str(garch_row["series"])] = models  # the latest fold's models per series
    regime = pd.concat(frames, ignore_index=True)
    regime = regime[["series", "timestamp", "fold", "garch_vol",
                     *[c for c in regime.columns if c.startswith("regime_")], "regime"]]
    write_parquet_atomic(regime, out / "regime.parquet")
    garch_table = pd.DataFrame(garch_rows)
    garch_table.to_csv(out / "garch_params.csv", index=False)
    summary_table = pd.concat(summaries, ignore_index=True)
    summary_table.to_csv(out / "regime_summary.csv", index=False)
    # the latest fold's fitted models per series (serving and the benchmark use them)
    joblib.dump(
        {"series": final, "vol_window": regime_config.vol_window,
         "trend_window": regime_config.trend_window},
        out / "final.joblib",
    )
    counts = regime["regime"].value_counts(dropna=False).sort_index()
    regime_counts = {("unknown" if pd.isna(k) else str(k)): int(v) for k, v in counts.items()}
    result: dict[str, object] = {
        "rows": len(regime),
        "folds": len(zoo.folds),
        "regime_counts": regime_counts,
        "garch_persistence_mean": float(garch_table["persistence"].mean()),
        "garch_converged": int(garch_table["converged"].sum()),
        "garch_fits": len(garch_table),
    }
    run = zoo_run(params, paths, zoo)
    run_id = create_run(
        run.experiment_id, run.parent_id, "regime",
        {KIND_TAG: "regime", "model": "regime", "model_family": "regime", "fold": "all",
         **run.tags},
        params={**{f"garch.{k}": v for k, v in garch_config.model_dump().items()},
                **{f"regime.{k}": v for k, v in regime_config.model_dump().items()}},
        metrics={
            "garch_persistence_mean": result["garch_persistence_mean"],
            "garch_alpha_mean": float(garch_table["alpha"].mean()),
            "garch_beta_mean": float(garch_table["beta"].mean()),
            **{f"share_regime_{k}": v / len(regime) for k, v in regime_counts.items()},
        },
        terminate=False,
    )
    import mlflow

    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifact(str(out / "garch_params.csv"))
        mlflow.log_artifact(str(out / "regime_summary.csv"))
    result["mlflow_run_id"] = run_id
    write_json(out / "summary.json", result)
    log.info("regime: %d test rows over %d folds", len(regime), len(zoo.folds))
    return result
