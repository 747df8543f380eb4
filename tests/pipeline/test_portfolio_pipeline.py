"""The portfolio path end to end on a miniature real-data project: the five bundled coins cut
short, `candlecast portfolio`'s stages in their own workspace, and ``/portfolio`` served from
the registered model by ``bentoml serve`` and fuzzed over its OpenAPI schema.

One module on purpose: the steps build on one run (about a minute on the `quick` sizes).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from candlecast.cli import app
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY, UNIVERSE_KEY
from candlecast.features.cross_section import coin_feature_names, universe_feature_names
from candlecast.pipeline.portfolio_run import run_portfolio_path
from candlecast.serving.config import ServingConfig, write_serving_config

pytestmark = pytest.mark.slow
SYMBOLS = ["BTC/USD", "ETH/USD", "EOS/USD", "LTC/USD", "XRP/USD"]
ROWS = 3000
#: the `quick` sizes for the portfolio profile (merged over profiles/portfolio.yaml)
QUICK = {
    "cross_section": {"beta_window": 96, "beta_min_periods": 24},
    "portfolio": {"tuning": {"n_trials": 4}},
}


def _mini(repo_root: Path, target: Path) -> Path:
    """The project's files, the five coins' first ROWS real candles, the `quick` params, and
    the portfolio profile with the quick sizes merged over it."""
    from mini_project import ROWS as MINI_ROWS
    from mini_project import make_mini_project

    from candlecast.config import deep_merge

    assert MINI_ROWS == ROWS
    make_mini_project(repo_root, target, symbols=SYMBOLS)
    (target / "profiles").mkdir(exist_ok=True)
    profile = yaml.safe_load((repo_root / "profiles" / "portfolio.yaml").read_text())
    (target / "profiles" / "portfolio.yaml").write_text(
        yaml.safe_dump(deep_merge(profile, QUICK), sort_keys=False))
    return target


@pytest.fixture(scope="module")
def portfolio_run(tmp_path_factory, repo_root):
    root = _mini(repo_root, tmp_path_factory.mktemp("portfolio") / "mini")
    lines: list[str] = []
    results = run_portfolio_path(root, progress=lines.append)
    return root, Path(results["workspace"]), results, lines


def test_the_portfolio_path_end_to_end(portfolio_run):
    root, ws, results, lines = portfolio_run
    assert any("portfolio-backtest done" in line for line in lines)
    # the default pipeline's outputs are untouched: everything is in the workspace
    assert not (root / "data" / "validated").exists() and not (root / "models").exists()
    params = yaml.safe_load((ws / "params.yaml").read_text())
    assert params["ingest"]["symbols"] == SYMBOLS and params["cross_section"]["enabled"]

    # the training set: the pooled model's features and the RELATIVE targets
    dataset = pd.read_parquet(ws / "data" / "training" / "dataset.parquet")
    from candlecast.config import load_params

    p = load_params(ws / "params.yaml")
    for name in (*coin_feature_names(p.cross_section), *universe_feature_names(p.cross_section)):
        assert name in dataset.columns, name
    full = dataset.groupby(EVENT_TIMESTAMP)["fwd_logret_16"].agg(["count", "sum"])
    full = full[full["count"] == 5]
    assert len(full) > 1000
    np.testing.assert_allclose(full["sum"], 0.0, atol=1e-12)  # demeaned across the coins
    known = dataset["fwd_logret_16"].notna() & (dataset["fwd_logret_16"] != 0)
    assert ((dataset.loc[known, "label_up_16"] == 1) == (dataset.loc[known, "fwd_logret_16"]
                                                          > 0)).all()
    assert (dataset["abs_fwd_logret_16"] != dataset["fwd_logret_16"]).mean() > 0.99

    # Feast: one view per level; the online rows are the latest offline rows
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(ws / "feature_repo"))
    assert {v.name for v in store.list_feature_views()} >= {
        "candle_features", "coin_cross_section", "universe_features"}
    uid = dataset[UNIVERSE_KEY].iloc[0]
    online = store.get_online_features(
        features=store.get_feature_service(p.cross_section.feature_service),
        entity_rows=[{JOIN_KEY: "bitfinex:ETH/USD:30m", UNIVERSE_KEY: uid}]).to_dict()
    coins = pd.read_parquet(ws / "data" / "features" / "cross_section.parquet")
    latest = coins[coins[JOIN_KEY] == "bitfinex:ETH/USD:30m"].sort_values(EVENT_TIMESTAMP).iloc[-1]
    assert online["xs_beta"][0] == pytest.approx(latest["xs_beta"])
    universe = pd.read_parquet(ws / "data" / "features" / "universe.parquet").iloc[-1]
    assert online["mkt_vol"][0] == pytest.approx(universe["mkt_vol"])

    # walk-forward: every scored fold's construction was chosen on earlier folds only
    folds = json.loads((ws / "models" / "portfolio" / "folds.json").read_text())
    summary = json.loads((ws / "reports" / "portfolio" / "summary.json").read_text())
    assert [str(f) for f in summary["window"]["scored_folds"]] == list(folds)
    for row in summary["folds"]:
        entry = folds[str(row["fold"])]
        assert all(f < row["fold"] for f in entry["tuned_on_folds"])
        assert pd.Timestamp(entry["tuning_end"]) < pd.Timestamp(row["start"])
    trials = pd.read_csv(ws / "models" / "portfolio" / "trials.csv")
    over = summary["overfitting"]
    assert over["n_trials"] >= len(trials) + over["universe"] + 4  # every candidate counted
    assert over["universe"] == trials["label"].nunique()
    # the book beside its baselines, net of costs; per coin; ranking per fold
    assert set(summary["book"]) == {"portfolio", "equal_weight", "vol_target_basket",
                                    "btc_hold", "momentum_rank"}
    hold = summary["book"]["btc_hold"]
    assert hold["trade_count"] == 1 and hold["costs_paid"]["total"] > 0
    assert sum(c["contribution"] for c in summary["coins"]) == pytest.approx(
        summary["book"]["portfolio"]["final_equity"] - 10_000.0, rel=1e-6, abs=1e-6)
    for row in summary["folds"]:
        assert {"portfolio", "equal_weight", "ensemble.rank_ic", "ensemble.icir"} <= set(row)
    ranking = json.loads((ws / "metrics" / "portfolio" / "ranking.json").read_text())
    assert {"ensemble@h16", "lightgbm@h16", "momentum_rank@h16"} <= set(ranking)
    assert all(name.startswith(("ensemble", "lightgbm", "momentum", "persistence",
                                "simple_average", "base_rate")) for name in ranking)
    for name in ("portfolio", "equal_weight", "btc_hold", "overfitting", "folds"):
        assert (ws / "metrics" / "portfolio" / f"{name}.json").exists()
    assert (ws / "reports" / "portfolio" / "portfolio.png").stat().st_size > 10_000

    # the registered model carries its construction and universe
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("candlecast-portfolio", "champion")
    meta = mlflow.pyfunc.load_model(f"models:/candlecast-portfolio/{version.version}"
                                    ).metadata.metadata["candlecast"]
    assert meta["universe_symbols"] == SYMBOLS and meta["portfolio"]["horizon"] in (16, 48)

    # candlecast report shows the portfolio beside the basket and BTC, and the targets
    text = CliRunner().invoke(app, ["report", "--root", str(root), "--portfolio",
                                    "--markdown"]).output
    for needle in ("portfolio (walk-forward)", "equal-weight basket", "BTC buy-and-hold",
                   "rank IC", "ICIR", "deflated Sharpe ratio", "equal-weight basket's"):
        assert needle in text, needle


def _candles_body(ws: Path, symbols: list[str], end: pd.Timestamp, n: int) -> dict:
    store = CandleStore(ws / "data" / "validated")
    body: dict = {"exchange": "bitfinex", "timeframe": "30m", "candles": {}, "positions": {}}
    for s in symbols:
        c = store.read(SeriesId("bitfinex", s, "30m"))
        c = c[c["timestamp"] <= end].tail(n)
        body["candles"][s] = [
            {"timestamp": t.isoformat().replace("+00:00", "Z"), "open": o, "high": h,
             "low": lo, "close": cl, "volume": v}
            for t, o, h, lo, cl, v in zip(c["timestamp"], c["open"], c["high"], c["low"],
                                          c["close"], c["volume"], strict=True)]
    return body


@pytest.fixture(scope="module")
def portfolio_service(portfolio_run, repo_root):
    import sys

    sys.path.insert(0, str(repo_root / "tests" / "serving"))
    from serving_harness import start_service, wait_ready

    root, ws, _, _ = portfolio_run
    config = ServingConfig(project_root=str(ws), tracking_uri=f"sqlite:///{root / 'mlruns.db'}",
                           model_uri="models:/candlecast-portfolio@champion",
                           feature_service="portfolio_model_v1",
                           fallback_model_uris=(), feature_repo=None, load_retry_seconds=None,
                           trace_networks=False, max_body_bytes=2_000_000, max_candles=1000)
    path = ws / "serving_config.json"
    write_serving_config(config, path)
    work = ws / "serve"
    work.mkdir(exist_ok=True)
    service = start_service(repo_root / "bentos", path, work)
    try:
        yield wait_ready(service, timeout=240)
    finally:
        service.stop()
        shutil.rmtree(work / "bentoml_home", ignore_errors=True)


def test_portfolio_endpoint_answers_the_constructor_and_its_features_match_the_pipeline(
        portfolio_run, portfolio_service):
    """/portfolio from the candles: the cross-section it computes at the decision bar equals
    the pipeline's batch table (the incremental features path), every weight respects the
    caps, and a coin without a candle at the decision bar is not traded."""
    _, ws, _, _ = portfolio_run
    end = pd.Timestamp("2017-11-28 12:00", tz="UTC")
    body = _candles_body(ws, SYMBOLS, end, 700)
    meta = httpx.get(f"{portfolio_service.url}/metadata", timeout=30).json()
    assert meta["portfolio"]["loaded"] and meta["portfolio"]["universe"] == SYMBOLS
    full = httpx.post(f"{portfolio_service.url}/portfolio", json=body, timeout=60)
    assert full.status_code == 200, full.text
    out = full.json()
    assert out["status"] == "ok" and set(out["weights"]) == set(SYMBOLS)
    assert out["feature_timestamp"].startswith("2017-11-28T12:30")
    coins = pd.read_parquet(ws / "data" / "features" / "cross_section.parquet")
    close = pd.Timestamp(out["feature_timestamp"])
    for s in SYMBOLS:  # the request's cross-section = the pipeline's batch table
        row = coins[(coins[JOIN_KEY] == f"bitfinex:{s}:30m") & (coins[EVENT_TIMESTAMP] == close)]
        assert out["coins"][s]["beta"] == pytest.approx(row["xs_beta"].iloc[0], rel=1e-9)
        assert out["coins"][s]["correlation"] == pytest.approx(row["xs_corr"].iloc[0], rel=1e-9)
        assert out["coins"][s]["expected_return"] is not None and out["coins"][s]["tradable"]
    # XRP misses the last bar and is held: frozen, not traded, counted in the caps
    body["candles"]["XRP/USD"] = body["candles"]["XRP/USD"][:-1]
    body["positions"] = {"XRP/USD": {"weight": 0.2, "bars_held": 30}}
    answer = httpx.post(f"{portfolio_service.url}/portfolio", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    xrp = out["coins"]["XRP/USD"]
    assert not xrp["tradable"] and xrp["weight"] == pytest.approx(0.2)
    assert xrp["action"] == "frozen" and "decision bar" in xrp["detail"]
    config = out["portfolio"]
    weights = np.array(list(out["weights"].values()))
    assert np.abs(weights).max() <= config["max_weight"] + 1e-9
    assert np.abs(weights).sum() <= config["max_gross"] + 1e-9
    bad = httpx.post(f"{portfolio_service.url}/portfolio", timeout=30, json={
        **body, "candles": {"DOGE/USD": body["candles"]["BTC/USD"]}})
    assert bad.status_code == 404 and bad.json()["field"] == "candles.DOGE/USD"


def test_portfolio_endpoint_fuzzed_finds_no_5xx(portfolio_service):
    """schemathesis over the service's OpenAPI document, positive and negative cases of
    /portfolio: never a 5xx, every 4xx in the one error shape."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{portfolio_service.url}/docs.json", timeout=10)
    ops = [r.ok() for r in schema.get_all_operations()]
    op = next(o for o in ops if o.path == "/portfolio")
    calls = [0]
    started = time.monotonic()
    with requests.Session() as session:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=30, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @seed(20240101)
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case) -> None:  # noqa: ANN001
                calls[0] += 1
                response = case.call(base_url=portfolio_service.url, session=session,
                                     timeout=30)
                assert response.status_code < 500, (response.status_code, response.text[:300])
                if response.status_code >= 400:
                    payload = json.loads(response.text)
                    assert set(payload) == {"error", "field"}, payload

            run()
    assert calls[0] >= 40
    assert time.monotonic() - started < 180
