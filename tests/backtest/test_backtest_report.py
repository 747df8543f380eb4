"""The report on the real hourly set: JSON metrics, DVC curve tables, PNG, self-contained HTML."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from candlecast.backtest import (
    Lineage,
    build_report,
    buy_and_hold,
    prepare_market,
    run_event_driven,
    run_vectorized,
    sma_crossover_signal,
    write_report,
)
from candlecast.backtest.metrics import simple_returns
from candlecast.backtest.summary import equity_with_start
from candlecast.risk import RiskConfig

LINEAGE = Lineage(data_version="md5:3f2a9c", git_commit="0123abcd", model_run_id="run-42",
                  params={"risk": {"max_drawdown": 0.3}, "costs": {"taker_fee_bps": 10}})


@pytest.fixture(scope="module")
def results(btc_1h):
    market = prepare_market(btc_1h.sort_values("timestamp").reset_index(drop=True))
    prev = np.concatenate([[market.close[0]], market.close[:-1]])
    tr = np.maximum(market.high - market.low, np.abs(market.high - prev))
    atr = pd.Series(tr).rolling(14).mean().to_numpy()
    sig = sma_crossover_signal(market.close, 10, 30)
    strategy = run_event_driven(market, sig, RiskConfig(), atr=atr, name="sma_risk")
    baseline = run_vectorized(market, sig, name="sma_plain")
    trials = [run_vectorized(market, sma_crossover_signal(market.close, f, s))
              for f, s in ((5, 20), (10, 30), (20, 50), (30, 90))]
    trial_returns = np.column_stack([simple_returns(equity_with_start(t)) for t in trials])
    return [strategy, buy_and_hold(market), baseline], trial_returns


def test_report_contents(results):
    runs, trial_returns = results
    report = build_report(runs, LINEAGE, n_trials=4, trial_returns=trial_returns, pbo_blocks=8,
                          bootstrap_samples=100)
    text = json.dumps(report.metrics, allow_nan=False)  # strictly JSON
    metrics = json.loads(text)
    assert metrics["primary"] == "sma_risk"
    assert set(metrics["strategies"]) == {"sma_risk", "buy_and_hold", "sma_plain"}
    main = metrics["strategies"]["sma_risk"]
    assert main["final_equity"] == pytest.approx(runs[0].final_equity)
    assert main["trade_count"] == int(runs[0].trades["closed"].sum()) > 100
    assert main["costs_paid"]["total"] > 0
    lo, hi = main["bootstrap_95"]["max_drawdown"]
    assert lo < hi
    over = metrics["overfitting"]
    assert 0 <= over["deflated_sharpe"]["dsr"] <= 1 and over["n_trials"] == 4
    assert 0 <= over["pbo"] <= 1 and over["pbo_splits"] == 70  # C(8, 4)
    assert metrics["lineage"] == {"data_version": "md5:3f2a9c", "git_commit": "0123abcd",
                                  "model_run_id": "run-42",
                                  "params": {"risk": {"max_drawdown": 0.3},
                                             "costs": {"taker_fee_bps": 10}}}

    curves = report.equity_curves
    assert list(curves.columns) == ["step", "timestamp", "sma_risk", "buy_and_hold", "sma_plain"]
    assert len(curves) <= 5_001 and curves["step"].iloc[-1] == len(runs[0].equity) - 1
    np.testing.assert_allclose(curves["sma_risk"], runs[0].equity[curves["step"]])
    assert (report.drawdown_curves[["sma_risk", "buy_and_hold"]] >= 0).all().all()
    assert curves["timestamp"].iloc[0] == "2017-07-01T11:00:00Z"

    png = report.figures["equity_drawdown.png"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.html
    for needle in ("md5:3f2a9c", "0123abcd", "run-42", "data:image/png;base64,",
                   "chandelier_stop", "deflated Sharpe ratio", "buy_and_hold"):
        assert needle in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert set(report.decision_counts["reason"]) >= {"signal_entry", "stop_loss"}


def test_write_report_files(results, tmp_path):
    runs, _ = results
    report = build_report(runs[:2], LINEAGE, bootstrap_samples=0)
    paths = write_report(report, tmp_path / "out")
    assert sorted(paths) == sorted(["metrics.json", "equity.csv", "drawdown.csv", "trades.csv",
                                    "decisions.csv", "equity_drawdown.png", "report.html"])
    assert json.loads(paths["metrics.json"].read_text()) == report.metrics
    equity = pd.read_csv(paths["equity.csv"])
    assert list(equity.columns) == ["step", "timestamp", "sma_risk", "buy_and_hold"]
    trades = pd.read_csv(paths["trades.csv"])
    assert len(trades) == len(runs[0].trades) and "exit_reason" in trades
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_report_input_errors(results):
    runs, _ = results
    with pytest.raises(ValueError, match="unique"):
        build_report([runs[0], runs[0]], LINEAGE)
    with pytest.raises(ValueError, match="primary"):
        build_report(runs, LINEAGE, primary="nope")
    short = run_vectorized(pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC"),
        "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}), np.zeros(3))
    with pytest.raises(ValueError, match="same candles"):
        build_report([runs[0], short], LINEAGE)
