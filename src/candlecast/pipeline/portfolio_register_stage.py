"""`portfolio-register` stage: the pooled ensemble WITH its portfolio construction becomes a
registered MLflow model (``portfolio.registered_model``), what ``/portfolio`` serves.

The bundle (``models/ensemble/serving``) gets the configuration the ``portfolio`` stage chose
for deployment, the universe, the cross-section and feature definitions it needs and the cost
model; its score is the walk-forward book's net Sharpe and Calmar on the decision window (the
latest ``ensemble.decision_folds`` scored folds) with the ensemble's log loss there as the
guard. ``champion`` moves by the champion rule (:mod:`candlecast.models.champion`): when there
is none, or when the current one was scored on the same window and data and earns less;
otherwise the new version is a ``challenger`` (comparing books on different windows needs
the ops comparison, not built for portfolios yet).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from candlecast.config import Params
from candlecast.data.schema import timeframe_to_timedelta
from candlecast.evaluation.metrics import log_loss
from candlecast.models.champion import ModelScore, decide_champion
from candlecast.models.ensemble import Ensemble
from candlecast.pipeline.cross_section_stage import universe_id
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.portfolio_stage import portfolio_dir
from candlecast.pipeline.register_stage import log_and_register, score_window
from candlecast.pipeline.zoo_common import ZooPaths, fresh_dir, load_zoo_data, write_json
from candlecast.portfolio import PortfolioConfig
from candlecast.tracking import configure_mlflow

log = logging.getLogger(__name__)


def registered_dir(root: Path) -> Path:
    return root / "models" / "portfolio_registered"


def bundle_extra(params: Params, deploy: dict[str, Any]) -> dict[str, Any]:
    """What ``/portfolio`` needs besides the ensemble: the construction, the universe, the
    feature and cross-section definitions, the cost model."""
    return {"portfolio": deploy["portfolio"], "portfolio_label": deploy["label"],
            "universe": [s.key for s in params.ingest.series],
            "universe_symbols": list(params.ingest.symbols), "universe_id": universe_id(params),
            "cross_section": params.cross_section.model_dump(mode="json"),
            "features": params.features.model_dump(mode="json"),
            "costs": params.costs.model_dump(mode="json")}


def evaluate(params: Params, paths: Paths, folds: list[int], deploy: dict[str, Any]
             ) -> tuple[dict[str, str], ModelScore]:
    oof = pd.read_parquet(ZooPaths(paths.root).ensemble_dir / "oof.parquet")
    mine = oof[oof["model"] == params.portfolio.model]
    decision = folds[-params.ensemble.decision_folds:]
    config = (PortfolioConfig.model_validate(deploy["portfolio"]) if deploy["portfolio"]
              else params.portfolio.default)
    window = mine[mine["fold"].isin(decision) & (mine["horizon"] == config.horizon)]
    frame = pd.read_parquet(paths.root / "reports" / "portfolio" / "book.parquet")
    book = pd.Series(frame["equity"].to_numpy(),
                     index=pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True)))
    step = timeframe_to_timedelta(params.ingest.timeframe)
    start, end = window["timestamp"].min() - step, window["timestamp"].max() - step
    bpy = pd.Timedelta(days=365) / step
    sharpe, calmar = score_window(book, bpy, start, end)
    bars = int(window.groupby("series").size().min())
    score = ModelScore(sharpe, calmar, log_loss(window["y"], window["prob_up"]), bars)
    evaluation = {
        "eval.window": f"{start} .. {end}", "eval.folds": ",".join(map(str, decision)),
        "eval.horizon": str(config.horizon), "eval.portfolio": deploy["label"],
        "eval.data_version": json.loads((ZooPaths(paths.root).ensemble_dir / "summary.json")
                                        .read_text())["data_version"],
        **score.as_tags("eval"), "oof_end": str(mine["timestamp"].max()),
    }
    return evaluation, score


def run_portfolio_register(params: Params, paths: Paths) -> dict[str, object]:
    zoo_paths = ZooPaths(paths.root)
    ensemble_summary = json.loads((zoo_paths.ensemble_dir / "summary.json").read_text())
    deploy = json.loads((portfolio_dir(paths.root) / "deploy.json").read_text())
    folds = sorted(int(f) for f in json.loads(
        (portfolio_dir(paths.root) / "folds.json").read_text()))
    out = fresh_dir(registered_dir(paths.root))
    shutil.copytree(zoo_paths.ensemble_dir / "serving", out / "serving")
    manifest_path = out / "serving" / "ensemble.json"
    manifest = json.loads(manifest_path.read_text())
    extra = bundle_extra(params, deploy)
    manifest.update(extra)
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    bundle = Ensemble.load(out / "serving")
    zoo = load_zoo_data(params, paths)
    evaluation, score = evaluate(params, paths, folds, deploy)
    configure_mlflow(params.mlflow.tracking_uri, params.mlflow.artifact_root,
                     params.mlflow.experiment, paths.root)
    name = params.portfolio.registered_model
    decision = _decide(params, name, evaluation, score)
    version = log_and_register(params, ensemble_summary["mlflow_run_id"], bundle, zoo, out,
                               evaluation, decision, name=name, extra=extra)
    summary = {"registered_model": name, "registered_version": version,
               "portfolio": deploy["label"], "evaluation": evaluation,
               "decision": decision.as_tags(), "mlflow_run_id": ensemble_summary["mlflow_run_id"]}
    write_json(out / "summary.json", summary)
    log.info("registered %s v%s: %s (%s)", name, version, decision.alias, decision.reason)
    return summary


def _decide(params: Params, name: str, evaluation: dict[str, str], score: ModelScore) -> Any:
    cfg = params.ensemble
    rule: dict[str, Any] = {
        "criterion": cfg.criterion, "min_bars": cfg.min_decision_rows,
        "max_log_loss": cfg.max_log_loss, "log_loss_tolerance": cfg.log_loss_tolerance}
    try:
        champion = MlflowClient().get_model_version_by_alias(name, "champion")
    except MlflowException:
        return decide_champion(score, None, basis="first", **rule)
    same = all(champion.tags.get(k) == evaluation[k]
               for k in ("eval.window", "eval.data_version"))
    stored = ModelScore.from_tags(champion.tags, "eval")
    if same and stored is not None:
        return decide_champion(score, stored, basis="same-window",
                               champion_version=str(champion.version), **rule)
    return decide_champion(score, None, basis="not-comparable",
                           champion_version=str(champion.version), **rule)
