"""Parity: replaying real candles through the paper trader gives the backtester's trades and equity.

The backtester (``run_event_driven``) gets the candles, the signal array and the ATR/volatility
from the *batch* feature path; the trader gets the same candles one by one from a replay feed,
computes its features incrementally, and asks an in-process signal service that answers from the
same signal table. Fills (time, side, size, price, fee, reason) and the per-candle equity must
agree to float rounding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trading_helpers import (
    assert_same_fills,
    build_paper_trader,
    replay_slice,
    sma_actions,
    trader_fills,
)

from candlecast.backtest import BacktestConfig, CostConfig, run_event_driven
from candlecast.features import FeatureConfig
from candlecast.risk import RiskConfig
from candlecast.risk.config import ExitConfig, LimitsConfig, SizingConfig

START, N = 6000, 1500  # a real slice of Bitfinex BTC/USD 30m, with gaps in the priming history


def _compare(tmp_path, btc_30m, actions, *, risk, costs, backtest, prob_up=None, kill_at=None):
    features = FeatureConfig()
    full, replay, feats = replay_slice(btc_30m, START, N, features)
    bt = run_event_driven(replay, actions, risk, costs, backtest, atr=feats["atr"].to_numpy(),
                          volatility=feats["rv_48"].to_numpy(), probability=(
                              None if prob_up is None else
                              np.where(actions > 0, prob_up, 1 - prob_up)),
                          kill_at=kill_at)
    trader, signals, sink, store = build_paper_trader(
        tmp_path, full, replay, actions, prob_up=prob_up, risk=risk, costs=costs,
        backtest=backtest, features=features)
    if kill_at is None:
        summary = trader.run()
        assert summary.status == "ended" and summary.ticks == N
    else:  # the kill switch file appears right after the close of the kill_at candle
        stop = int(np.searchsorted(replay["timestamp"], kill_at))
        trader.run(max_ticks=stop + 1)
        (tmp_path / "KILL").write_text("test kill")
        summary = trader.run()
        assert summary.status == "killed"
    fills = trader_fills(store)
    assert len(bt.fills) > 20  # a test that trades
    assert_same_fills(fills, bt.fills)
    ticks = store.frame("ticks")
    n = len(ticks)
    np.testing.assert_allclose(ticks["equity"].to_numpy(), bt.equity[:n], rtol=1e-9)
    assert sink.writes == n
    assert signals.calls == (n if kill_at is None else n - 1)  # killed: no more signals
    return bt, trader, store


def test_paper_replay_matches_backtester_default_risk(tmp_path, btc_30m):
    """Default risk engine (ATR stop, chandelier, break-even, fixed-fractional sizing, limits)
    and default costs (spread, slippage, impact, 10 % volume cap -> partial fills), long-short."""
    actions = sma_actions(btc_30m, START, N)
    bt, trader, store = _compare(tmp_path, btc_30m, actions, risk=RiskConfig(),
                                 costs=CostConfig(), backtest=BacktestConfig())
    reasons = set(bt.fills["reason"])
    assert {"signal_entry", "signal_exit"} <= reasons or "signal_reverse" in reasons
    assert reasons & {"stop_loss", "chandelier_stop", "breakeven_stop"}  # risk exits happened
    # decisions agree too (the backtester never decides on its last bar)
    bt_dec = bt.decisions
    tr_dec = store.frame("decisions")
    tr_dec = tr_dec[tr_dec["ts"] < pd.DatetimeIndex(bt.timestamps).asi8[-1]]
    assert list(tr_dec["action"]) == list(bt_dec["action"])
    assert list(tr_dec["reason"]) == list(bt_dec["reason"])
    np.testing.assert_allclose(tr_dec["qty"].to_numpy(float), bt_dec["qty"].to_numpy(float),
                               rtol=1e-9)
    # the stored risk state is the backtester's final risk state
    assert trader.risk_state is not None
    final = bt.final_risk_state  # type: ignore[attr-defined]
    assert trader.risk_state.peak_equity == pytest.approx(final.peak_equity, rel=1e-9)
    assert set(trader.risk_state.positions) == set(final.positions)


def test_paper_replay_matches_backtester_kelly_reenter_funding(tmp_path, btc_30m):
    """Kelly sizing from the service's probabilities, take-profit targets (maker fills), time
    stops, re-entries after exits, long-only, perpetual funding, and an account large enough
    for the 5 % volume cap to split orders over several candles (partial fills)."""
    rng = np.random.default_rng(7)
    actions = sma_actions(btc_30m, START, N, long_only=True)
    prob_up = np.clip(0.5 + 0.15 * actions + rng.normal(0, 0.05, N), 0.01, 0.99)
    risk = RiskConfig(
        sizing=SizingConfig(method="kelly", kelly_fraction=0.5, kelly_cap=0.8),
        exits=ExitConfig(stop_loss_pct=0.02, take_profit_r=1.5, time_stop_bars=40,
                         chandelier_atr_multiple=None),
        limits=LimitsConfig(max_trades_per_day=4, cooldown_bars_after_loss=3))
    costs = CostConfig(funding_rate_8h=0.0001, max_participation=0.05)
    bt, _, store = _compare(
        tmp_path, btc_30m, actions, risk=risk, costs=costs, prob_up=prob_up,
        backtest=BacktestConfig(allow_short=False, reenter=True, initial_equity=1e6))
    assert {"take_profit", "time_stop"} <= set(bt.fills["reason"])
    fills = store.frame("fills")
    assert (fills.groupby("client_id")["ts"].nunique() > 1).sum() >= 3  # partial fills
    assert bt.costs["funding"] > 0


def test_kill_switch_file_matches_backtester_kill_at(tmp_path, btc_30m):
    """A kill file seen after candle k's close = the backtester's ``kill_at`` candle k: the
    position is closed at the next open and nothing is traded afterwards."""
    actions = sma_actions(btc_30m, START, N)
    _, replay, feats = replay_slice(btc_30m, START, N, FeatureConfig())
    plain = run_event_driven(replay, actions, RiskConfig(), CostConfig(), BacktestConfig(),
                             atr=feats["atr"].to_numpy())
    holding = np.flatnonzero(plain.position != 0)  # kill while a position is open
    kill_at = replay["timestamp"].iloc[int(holding[len(holding) // 2])]
    bt, trader, store = _compare(tmp_path, btc_30m, actions, risk=RiskConfig(),
                                 costs=CostConfig(), backtest=BacktestConfig(), kill_at=kill_at)
    fills = store.frame("fills")
    assert fills["reason"].iloc[-1] == "kill_switch"
    assert trader.books["BTC/USD"].pos == 0.0 and trader.account.killed
    events = store.frame("events")
    assert "kill" in set(events["kind"])
