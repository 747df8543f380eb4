"""Champion/challenger retraining.

1. ``prepare_retrain``: the newest ``ops.promotion.eval_bars`` bars of the training set are
   held out; the rows before them go to a workspace (``<state_dir>/retrain/workspace``).
2. ``train_step``: the pipeline's own zoo stages (regime, train-model@each, ensemble) run on
   the workspace with ``ensemble.promotion = defer`` and the project's MLflow store: the new
   ensemble is registered as ``challenger``; the project's DVC outputs are not touched.
3. ``evaluate_and_decide``: champion and challenger are scored on the held-out rows neither
   was trained on (after both ``oof_end`` + the label horizon), their signals backtested net
   of costs through the risk engine, and the per-bar return difference bootstrapped. The
   ``champion`` alias moves only if the challenger is significantly better; either way the
   decision and its reason are tags on the challenger's version, its run and an ops run.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from candlecast.backtest import buy_and_hold
from candlecast.common.time import utc_now_iso
from candlecast.common.uris import absolute_sqlite_uri
from candlecast.config import Params
from candlecast.data.schema import timeframe_to_timedelta
from candlecast.monitoring.alerts import Notifier, NullNotifier
from candlecast.ops.context import (
    load_training_set,
    project_lineage,
    setup_mlflow,
    trained_until,
)
from candlecast.ops.promotion import decide_promotion, first_unseen_time, holdout_cut
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import decision_plan, run_stage, zoo_plan
from candlecast.pipeline.scoring import score_registered, trade_forecasts
from candlecast.pipeline.zoo_common import SERIES, TIME
from candlecast.tracking.aliases import CHAMPION, alias_version, mark_challenger, move_champion

log = logging.getLogger(__name__)


def retrain_dir(params: Params, paths: Paths) -> Path:
    return paths.root / params.ops.state_dir / "retrain"


def workspace_paths(params: Params, paths: Paths) -> Paths:
    return Paths(retrain_dir(params, paths) / "workspace")


def workspace_params(params: Params, paths: Paths) -> Params:
    """The project's params with the MLflow store made absolute (the workspace is another
    root) and the champion decision deferred to :func:`evaluate_and_decide`."""
    s = params.mlflow
    uri = absolute_sqlite_uri(s.tracking_uri, paths.root)
    artifacts = Path(s.artifact_root)
    if not artifacts.is_absolute():
        artifacts = (paths.root / artifacts).resolve()
    return params.model_copy(update={
        "mlflow": s.model_copy(update={"tracking_uri": uri, "artifact_root": str(artifacts)}),
        "ensemble": params.ensemble.model_copy(update={"promotion": "defer"}),
    })


def train_plan(params: Params) -> list[tuple[str, str | None]]:
    """The stages the challenger needs: the zoo (``compare`` only writes research reports),
    then its policy, its walk-forward backtest and its registration (as a challenger)."""
    zoo = [(stage, arg) for stage, arg in zoo_plan(params) if stage != "compare"]
    return [*zoo, *decision_plan(params)]


def prepare_retrain(params: Params, paths: Paths) -> dict[str, Any]:
    dataset = load_training_set(params, paths)
    cut = holdout_cut(dataset[TIME], params.ops.promotion.eval_bars)
    ws = workspace_paths(params, paths)
    if ws.root.exists():
        shutil.rmtree(ws.root)
    ws.training_set.parent.mkdir(parents=True)
    train = dataset[dataset[TIME] < cut]
    train.to_parquet(ws.training_set, index=False)
    # the policy and backtest stages read candles and features; they only ever look at the
    # bars of the challenger's out-of-fold forecasts, which end before the cut
    for name in ("validated", "features"):
        link = ws.root / "data" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((paths.root / "data" / name).resolve(), target_is_directory=True)
    plan = {"workspace": str(ws.root), "cut": str(cut), "train_rows": len(train),
            "held_out_rows": int(len(dataset) - len(train)),
            "train_end": str(train[TIME].max())}
    (retrain_dir(params, paths) / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def train_step(params: Params, paths: Paths, stage: str, arg: str | None = None
               ) -> dict[str, Any]:
    """One zoo stage of the challenger, in the workspace."""
    return run_stage(stage, workspace_params(params, paths), workspace_paths(params, paths), arg)


def _eval_keys(dataset: pd.DataFrame, start: pd.Timestamp, label: str) -> pd.DataFrame:
    rows = dataset[(dataset[TIME] > start) & dataset[label].notna()]
    return rows[[SERIES, TIME]].reset_index(drop=True)


def evaluate_and_decide(params: Params, paths: Paths, notifier: Notifier | None = None
                        ) -> dict[str, Any]:
    notifier = notifier or NullNotifier()
    client = setup_mlflow(params, paths)
    name = params.ensemble.registered_model
    plan = json.loads((retrain_dir(params, paths) / "plan.json").read_text())
    summary = json.loads((workspace_paths(params, paths).root / "models" / "registered"
                          / "summary.json").read_text())
    challenger_version = str(summary["registered_version"])
    challenger = client.get_model_version(name, challenger_version)
    champion_version = alias_version(client, name, CHAMPION)
    bar = timeframe_to_timedelta(params.ingest.timeframe)
    dataset = load_training_set(params, paths)
    ends = [trained_until(challenger)]
    champion = None
    if champion_version is not None:
        champion = client.get_model_version(name, champion_version)
        ends.append(trained_until(champion))
    start = max(first_unseen_time(ends, params.label_horizon, bar),
                pd.Timestamp(plan["cut"]) - bar)
    keys = _eval_keys(dataset, start, params.train.label)
    evaluation: dict[str, Any] = {"window_start_after": str(start), "rows": len(keys),
                                  "champion_version": champion_version,
                                  "challenger_version": challenger_version}
    returns: dict[str, np.ndarray | None] = {"challenger": None, "champion": None}
    if len(keys):
        evaluation["window"] = f"{keys[TIME].min()} .. {keys[TIME].max()}"
        versions = {"challenger": challenger_version, "champion": champion_version}
        books = {}
        for role, version in versions.items():
            if version is None:
                continue
            books[role], policy = book_returns(params, paths, name, version, dataset, keys,
                                               bar, role)
            evaluation[f"{role}_policy"] = policy
        if "champion" in books:
            paired = pd.concat([books["challenger"].rename("challenger"),
                                books["champion"].rename("champion")], axis=1).dropna()
            returns = {"challenger": paired["challenger"].to_numpy(),
                       "champion": paired["champion"].to_numpy()}
        else:
            returns["challenger"] = books["challenger"].to_numpy()
    mine = returns["challenger"] if returns["challenger"] is not None else np.array([])
    if champion_version is None:
        decision = decide_promotion(mine, None, challenger_version=challenger_version,
                                    champion_version=None, config=params.ops.promotion)
    else:
        theirs = returns["champion"] if returns["champion"] is not None else np.array([])
        decision = decide_promotion(mine, theirs, challenger_version=challenger_version,
                                    champion_version=champion_version,
                                    config=params.ops.promotion)
    return _record(params, paths, client, name, summary, decision, evaluation, notifier)


def book_returns(params: Params, paths: Paths, name: str, version: str,
                 dataset: pd.DataFrame, keys: pd.DataFrame, bar: pd.Timedelta, role: str
                 ) -> tuple[pd.Series, str]:
    """A registered version's book returns on the evaluation rows: its forecasts traded with
    ITS bundled policy through the risk engine and the cost model (the pipeline's scoring
    path); a version without a policy is flat (zero returns)."""
    scored = score_registered(f"models:/{name}/{version}", dataset, keys, bar)
    if scored.forecasts["prob_up"].isna().any():
        missing = int(scored.forecasts["prob_up"].isna().sum())
        raise ValueError(f"{role} v{version} gave no forecast on {missing} evaluation rows")
    policies = {0: scored.policy}
    returns, _ = trade_forecasts(params, paths, scored.forecasts, policies,
                                 f"{role} v{version}")
    return returns, "flat" if scored.policy is None else scored.policy.label()


def _record(params: Params, paths: Paths, client: Any, name: str, summary: dict[str, Any],
            decision: Any, evaluation: dict[str, Any], notifier: Notifier) -> dict[str, Any]:
    when = utc_now_iso()
    version = decision.challenger_version
    lineage = project_lineage(params, paths).as_tags()
    tags = {**decision.as_tags(), "ops.decided_at": when,
            "ops.eval_window": evaluation.get("window", ""),
            "ops.project_params_hash": lineage["lineage.params_hash"]}
    with mlflow.start_run(run_name=f"retrain {when}") as run:
        mlflow.set_tags({"kind": "ops.retrain", **lineage, **tags,
                         "challenger_run_id": summary["mlflow_run_id"]})
        metrics = {"periods": float(decision.periods)}
        if decision.bootstrap is not None:
            metrics.update({"mean_diff": decision.bootstrap.mean_diff,
                            "p_value": decision.bootstrap.p_value,
                            "ci_low": decision.bootstrap.ci_low,
                            "ci_high": decision.bootstrap.ci_high})
        for key in ("challenger_return", "champion_return"):
            value = getattr(decision, key)
            if value is not None:
                metrics[key] = value
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"decision": decision.as_dict(), "evaluation": evaluation,
                         "lineage": lineage}, "ops/decision.json")
    tags["ops.run_id"] = run.info.run_id
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    for key, value in tags.items():
        client.set_tag(summary["mlflow_run_id"], key, value)
    if decision.promote:
        move_champion(client, name, version, decision.reason, actor="ops retrain", when=when)
    else:
        mark_challenger(client, name, version)
    result = {"decision": decision.as_dict(), "evaluation": evaluation,
              "ops_run_id": run.info.run_id, "challenger_run_id": summary["mlflow_run_id"],
              "champion": alias_version(client, name, CHAMPION), "lineage": lineage}
    (retrain_dir(params, paths) / "latest.json").write_text(
        json.dumps(result, indent=2, default=str) + "\n")
    event = "retrain_promoted" if decision.promote else "retrain_rejected"
    notifier.notify(event, f"challenger v{version} {decision.outcome}: {decision.reason}",
                    challenger_version=version, champion_version=decision.champion_version,
                    ops_run_id=run.info.run_id)
    log.info("retrain: v%s %s (%s)", version, decision.outcome, decision.reason)
    return result


def _candles(paths: Paths, key: str, timestamps: pd.DatetimeIndex) -> pd.DataFrame:
    """The stored candles of series ``key`` at ``timestamps`` (open times)."""
    from candlecast.data.schema import SeriesId
    from candlecast.data.store import CandleStore

    candles = CandleStore(paths.validated).read(SeriesId.from_key(key))
    return candles[candles["timestamp"].isin(timestamps)].reset_index(drop=True)


def run_retrain(params: Params, paths: Paths, notifier: Notifier | None = None
                ) -> dict[str, Any]:
    """The whole retrain (what the Prefect flow runs as separate tasks)."""
    plan = prepare_retrain(params, paths)
    for stage, arg in train_plan(params):
        train_step(params, paths, stage, arg)
    return {"plan": plan, **evaluate_and_decide(params, paths, notifier)}


def backtest_report(params: Params, paths: Paths) -> dict[str, Any]:
    """After a retrain: the champion's and the challenger's backtests on the evaluation window
    (beside buy-and-hold and the baselines), one HTML report per series under
    ``reports/ops/backtest/``, logged to the retrain's ops run."""
    from candlecast.backtest import Lineage as BacktestLineage
    from candlecast.backtest import build_report, write_report

    latest = retrain_dir(params, paths) / "latest.json"
    if not latest.exists():
        raise FileNotFoundError(f"{latest} is missing; run the retrain first")
    done = json.loads(latest.read_text())
    client = setup_mlflow(params, paths)
    name = params.ensemble.registered_model
    bar = timeframe_to_timedelta(params.ingest.timeframe)
    dataset = load_training_set(params, paths)
    start = pd.Timestamp(done["evaluation"]["window_start_after"])
    keys = _eval_keys(dataset, start, params.train.label)
    if keys.empty:
        return {"status": "no evaluation rows", "reports": []}
    versions = {"challenger": done["evaluation"]["challenger_version"],
                "champion": done["evaluation"]["champion_version"]}
    per_series: dict[str, list[Any]] = {}
    for role, version in versions.items():
        if version is None:
            continue
        scored = score_registered(f"models:/{name}/{version}", dataset, keys, bar)
        _, results = trade_forecasts(params, paths, scored.forecasts, {0: scored.policy},
                                     f"{role} v{version}")
        for key, result in results.items():
            per_series.setdefault(key, []).append(result)
    for key, strategies in per_series.items():  # buy-and-hold beside, on the same bars
        strategies.append(buy_and_hold(_candles(paths, key, strategies[0].timestamps),
                                       params.costs, params.backtest.run))
    lineage = BacktestLineage(
        data_version=done["lineage"]["lineage.data_version"],
        git_commit=done["lineage"]["lineage.git_commit"],
        model_run_id=done["challenger_run_id"],
        params={"params_hash": params.hash(), "ops_run_id": done["ops_run_id"],
                "feature_service": params.feature_store.feature_service},
    )
    out_root = paths.root / "reports" / "ops" / "backtest"
    written = []
    for key, strategies in sorted(per_series.items()):
        report = build_report(strategies, lineage, n_trials=2,
                              title=f"champion vs challenger, {key}")
        folder = out_root / key.replace("/", "-").replace(":", "_")
        write_report(report, folder)
        written.append(str(folder / "report.html"))
    with mlflow.start_run(run_id=done["ops_run_id"]):
        for path in written:
            mlflow.log_artifact(path, f"backtest/{Path(path).parent.name}")
    del client
    return {"status": "written", "reports": written, "ops_run_id": done["ops_run_id"]}
