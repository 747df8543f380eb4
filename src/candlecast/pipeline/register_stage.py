"""`register` stage: the ensemble WITH the policy chosen for it becomes a registered MLflow model;
``champion`` moves only when model + policy earn more, net of costs, out of sample.

1. The ensemble bundle (``models/ensemble/serving``) gets the policy the ``policy`` stage chose
   for deployment (``models/policy/deploy.json``; none: the policy stays flat) and the cost
   model it was chosen under; the result is ``models/registered/serving``.
2. Its score on the decision window (the latest ``ensemble.decision_folds`` scored folds): the
   net Sharpe and Calmar of the walk-forward policy's book there (``reports/backtest/
   policy_book.parquet``) and the ensemble's log loss at the policy's horizon (the guard).
3. The champion rule (:mod:`candlecast.models.champion`) against the current ``champion`` on
   the same bars: its stored score when it was scored on the same window and data, else the
   champion re-scored with ITS bundled policy on the bars after everything it trained on
   (:mod:`candlecast.pipeline.scoring`, the path the ops comparison uses too).
4. Logged as a pyfunc (signature, input example, metadata: window rows, horizons, policy,
   costs) in the ensemble's MLflow run and registered as ``ensemble.registered_model``; the
   alias moves (or ``challenger``), the reason is a tag. ``ensemble.promotion: defer`` only
   registers a challenger (the ops retrain decides).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from candlecast.backtest.metrics import calmar_ratio, sharpe_ratio
from candlecast.common.time import as_utc, naive_utc
from candlecast.config import Params
from candlecast.evaluation.metrics import log_loss
from candlecast.models.champion import (
    ChampionDecision,
    ModelScore,
    decide_champion,
    deferred_decision,
)
from candlecast.models.ensemble import Ensemble
from candlecast.models.ensemble_pyfunc import EnsemblePyfunc
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.policy_stage import policy_dir
from candlecast.pipeline.scoring import score_registered, trade_forecasts
from candlecast.pipeline.zoo_common import ZooData, ZooPaths, fresh_dir, load_zoo_data, write_json
from candlecast.policy import PolicyConfig
from candlecast.tracking import configure_mlflow

log = logging.getLogger(__name__)


def registered_dir(root: Path) -> Path:
    return root / "models" / "registered"


def score_window(book: pd.Series, bars_per_year: float, start: pd.Timestamp,
                 end: pd.Timestamp) -> tuple[float, float]:
    """Net Sharpe and Calmar of a book equity curve between two close times (inclusive), from
    the equity just before ``start``; 0 and 0 for a book that stayed flat (it neither earned
    nor risked anything)."""
    before = book[book.index < start]
    base = before.iloc[-1] if len(before) else book.iloc[0]
    part = book[(book.index >= start) & (book.index <= end)].to_numpy()
    equity = np.concatenate([[base], part])
    returns = np.diff(equity) / equity[:-1]
    if len(returns) and not np.any(returns):  # a flat book: no return, no risk
        return 0.0, 0.0
    return sharpe_ratio(returns, bars_per_year), calmar_ratio(equity, bars_per_year)


def run_register(params: Params, paths: Paths) -> dict[str, object]:
    zoo_paths = ZooPaths(paths.root)
    ensemble_summary = json.loads((zoo_paths.ensemble_dir / "summary.json").read_text())
    deploy = json.loads((policy_dir(paths.root) / "deploy.json").read_text())
    folds = json.loads((policy_dir(paths.root) / "folds.json").read_text())
    out = fresh_dir(registered_dir(paths.root))
    shutil.copytree(zoo_paths.ensemble_dir / "serving", out / "serving")
    manifest_path = out / "serving" / "ensemble.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(policy=deploy["policy"], policy_label=deploy["label"],
                    policy_reason=deploy["reason"], costs=params.costs.model_dump(mode="json"))
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    bundle = Ensemble.load(out / "serving")
    zoo = load_zoo_data(params, paths)
    evaluation, score = evaluate(params, paths, folds, deploy)
    criterion = params.ensemble.criterion
    if params.ensemble.promotion == "defer":
        decision = deferred_decision(score, criterion)
    else:
        decision = _decide(params, paths, zoo, evaluation, score)
    configure_mlflow(params.mlflow.tracking_uri, params.mlflow.artifact_root,
                     params.mlflow.experiment, paths.root)
    version = log_and_register(params, ensemble_summary["mlflow_run_id"], bundle, zoo, out,
                               evaluation, decision)
    summary = {
        "registered_model": params.ensemble.registered_model,
        "registered_version": version,
        "policy": deploy["label"],
        "evaluation": evaluation,
        "decision": {k: v for k, v in decision.as_tags().items()},
        "mlflow_run_id": ensemble_summary["mlflow_run_id"],
        "oof_end": ensemble_summary["oof_end"],
    }
    write_json(out / "summary.json", summary)
    log.info("registered v%s: %s (%s)", version, decision.alias, decision.reason)
    return summary


def evaluate(params: Params, paths: Paths, folds: dict[str, Any], deploy: dict[str, Any]
             ) -> tuple[dict[str, str], ModelScore]:
    """The new model + policy on the decision window: the walk-forward policy's book there and
    the ensemble's log loss at the deployed policy's horizon (the primary horizon if flat)."""
    oof = pd.read_parquet(ZooPaths(paths.root).ensemble_dir / "oof.parquet")
    mine = oof[oof["model"] == params.backtest.model]
    scored = sorted(int(f) for f in folds)
    decision_folds = scored[-params.ensemble.decision_folds:]
    horizon = (PolicyConfig.model_validate(deploy["policy"]).horizon if deploy["policy"]
               else params.label_horizon)
    window = mine[mine["fold"].isin(decision_folds) & (mine["horizon"] == horizon)]
    book = _policy_book(paths)
    bpy = _bars_per_year(params)
    start, end = window["timestamp"].min(), window["timestamp"].max()
    sharpe, calmar = score_window(book, bpy, start, end)
    bars = int(window.groupby("series").size().min())
    score = ModelScore(sharpe, calmar, log_loss(window["y"], window["prob_up"]), bars)
    evaluation = {
        "eval.window": f"{start} .. {end}",
        "eval.folds": ",".join(str(f) for f in decision_folds),
        "eval.horizon": str(horizon),
        "eval.data_version": json.loads((ZooPaths(paths.root).ensemble_dir / "summary.json")
                                        .read_text())["data_version"],
        "eval.policy": deploy["label"],
        **score.as_tags("eval"),
        "oof_end": str(mine["timestamp"].max()),
    }
    return evaluation, score


def _policy_book(paths: Paths) -> pd.Series:
    path = paths.root / "reports" / "backtest" / "policy_book.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the backtest stage first")
    frame = pd.read_parquet(path)
    return pd.Series(frame["equity"].to_numpy(),
                     index=pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True)))


def _bars_per_year(params: Params) -> float:
    from candlecast.data.schema import timeframe_to_timedelta

    return 365 * 86_400 / timeframe_to_timedelta(params.ingest.timeframe).total_seconds()


def _decide(params: Params, paths: Paths, zoo: ZooData, evaluation: dict[str, str],
            score: ModelScore) -> ChampionDecision:
    name = params.ensemble.registered_model
    cfg = params.ensemble
    rule = {"criterion": cfg.criterion, "min_bars": cfg.min_decision_rows,
            "max_log_loss": cfg.max_log_loss, "log_loss_tolerance": cfg.log_loss_tolerance}
    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return decide_champion(score, None, basis="first", **rule)
    tags, version = champion.tags, str(champion.version)
    same = all(tags.get(k) == evaluation[k] for k in ("eval.window", "eval.data_version"))
    stored = ModelScore.from_tags(tags, "eval")
    if same and stored is not None:
        return decide_champion(score, stored, basis="same-window", champion_version=version,
                               **rule)
    return _after_champion(params, paths, zoo, evaluation, score, tags, version, rule)


def _after_champion(params: Params, paths: Paths, zoo: ZooData, evaluation: dict[str, str],
                    score: ModelScore, tags: dict[str, str], version: str,
                    rule: dict[str, Any]) -> ChampionDecision:
    """Both scored on the decision-window bars after everything the champion trained on: the
    new model's walk-forward policy book there, the champion with its bundled policy."""
    name = params.ensemble.registered_model
    start_text, end_text = evaluation["eval.window"].split(" .. ")
    trained_end = as_utc(pd.Timestamp(tags.get("oof_end", "2262-01-01")))
    horizon = int(evaluation["eval.horizon"])
    start = max(pd.Timestamp(start_text), trained_end + horizon * zoo.spec.bar)
    end = pd.Timestamp(end_text)
    history = zoo.history
    keys = history[(history[zoo.spec.time_column] > start)
                   & (history[zoo.spec.time_column] <= end)][
        [zoo.spec.series_column, zoo.spec.time_column]].reset_index(drop=True)
    bars = int(keys.groupby(zoo.spec.series_column).size().min()) if len(keys) else 0
    if bars < rule["min_bars"]:
        return decide_champion(replace(score, bars=bars), None,
                               basis="not-comparable", champion_version=version, **rule)
    try:
        theirs = score_registered(f"models:/{name}/{version}", history, keys, zoo.spec.bar)
    except Exception as error:  # noqa: BLE001 - e.g. a champion this code cannot load
        log.warning("champion v%s cannot be scored: %s", version, error)
        return decide_champion(score, None, basis="not-comparable", champion_version=version,
                               **rule)
    if theirs.policy is None or theirs.forecasts["prob_up"].isna().any():
        return decide_champion(score, None, basis="not-comparable", champion_version=version,
                               **rule)
    returns, _ = trade_forecasts(params, paths, theirs.forecasts, {0: theirs.policy},
                                 f"champion v{version}")
    equity = pd.Series(np.cumprod(1.0 + returns.to_numpy()), index=returns.index)
    bpy = _bars_per_year(params)
    their_sharpe, their_calmar = score_window(equity, bpy, start, end)
    rows = theirs.forecasts[theirs.forecasts["horizon"] == theirs.policy.horizon]
    labels = history.set_index([zoo.spec.series_column, zoo.spec.time_column])[
        f"label_up_{theirs.policy.horizon}"]
    y = labels.reindex(pd.MultiIndex.from_frame(rows[["series", "timestamp"]].rename(
        columns={"series": zoo.spec.series_column, "timestamp": zoo.spec.time_column})))
    known = y.notna().to_numpy()
    their_loss = log_loss(y.to_numpy()[known], rows["prob_up"].to_numpy()[known])
    book = _policy_book(paths)
    our_sharpe, our_calmar = score_window(book, bpy, start, end)
    oof = pd.read_parquet(ZooPaths(paths.root).ensemble_dir / "oof.parquet")
    ours = oof[(oof["model"] == params.backtest.model) & (oof["horizon"] == horizon)
               & (oof["timestamp"] > start) & (oof["timestamp"] <= end)]
    new = ModelScore(our_sharpe, our_calmar, log_loss(ours["y"], ours["prob_up"]), bars)
    champion = ModelScore(their_sharpe, their_calmar, their_loss, bars)
    return decide_champion(new, champion, basis="after-champion-training",
                           champion_version=version, **rule)


def log_and_register(params: Params, run_id: str, bundle: Ensemble, zoo: ZooData, out: Path,
                     evaluation: dict[str, str], decision: ChampionDecision, *,
                     name: str | None = None, extra: dict[str, Any] | None = None) -> str:
    """Log ``bundle`` as the pyfunc in the ensemble's run ``run_id``, register it as ``name``
    (default ``ensemble.registered_model``) with ``extra`` in its candlecast metadata, tag the
    version with the evaluation and the decision and move its alias."""
    import joblib as _joblib
    import sklearn
    from mlflow.models import infer_signature

    name = name or params.ensemble.registered_model
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

    for package in ("torch", "lightgbm", "chronos-forecasting", "pytorch-lightning", "arch",
                    "scipy"):
        with contextlib.suppress(PackageNotFoundError):  # not installed: not pinned
            requirements.append(f"{package}=={installed(package)}")
    metadata = {"candlecast": {
        "window_rows": bundle.window_rows, "models": bundle.primary.manifest["models"],
        "label": params.train.label, "horizons": bundle.horizons,
        "primary_horizon": bundle.primary_horizon, "policy": bundle.policy,
        "policy_label": bundle.manifest.get("policy_label"), "costs": bundle.costs,
        **(extra or {}),
    }}
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=EnsemblePyfunc(),
            artifacts={"ensemble": str(out / "serving")}, signature=signature,
            input_example=example, pip_requirements=requirements, metadata=metadata,
            registered_model_name=name,
        )
        mlflow.log_dict(metadata["candlecast"], "policy/bundle.json")
        mlflow.set_tags({**evaluation, **decision.as_tags()})
    version = str(info.registered_model_version)
    client = MlflowClient()
    tags = {**evaluation, **decision.as_tags()}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value if value else "-")
    if decision.alias == "champion":
        from candlecast.tracking.aliases import move_champion

        move_champion(client, name, version, decision.reason, actor="register stage")
    else:
        client.set_registered_model_alias(name, decision.alias, version)
    return version


