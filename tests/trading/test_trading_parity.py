"""Parity: replaying real candles through the paper trader gives the target backtester's trades,
decisions and equity.

The backtester (``run_targets``) gets the candles, the ATR from the *batch* feature path and a
``PolicyDecider`` over precomputed forecast arrays; the trader gets the same candles one by one
from a replay feed, computes its features incrementally, reports its intended position and bars
held to an in-process signal service, and that service runs the SAME policy on the same arrays
for the position the trader reported. Fills (time, side, size, price, fee, reason), decisions,
the per-candle equity and what the trader reported must agree to float rounding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trading_helpers import (
    RecordingDecider,
    assert_same_decisions,
    assert_same_fills,
    backtest_script,
    build_paper_trader,
    make_script,
    replay_slice,
    trader_fills,
)

from candlecast.backtest import BacktestConfig, CostConfig
from candlecast.backtest.config import ExecutionConfig
from candlecast.features import FeatureConfig
from candlecast.risk import RiskConfig
from candlecast.risk.config import ExitConfig, LimitsConfig

START, N = 6000, 1500  # a real slice of Bitfinex BTC/USD 30m, with gaps in the priming history
STOPS = {"stop_loss", "chandelier_stop", "breakeven_stop", "trailing_stop"}
LONG_SHORT = {"horizon": 4, "entry_margin": 1.0, "exit_margin": 0.0, "min_hold_bars": 2,
              "vol_target": 0.5, "allow_short": True, "min_change": 0.1}


def _compare(tmp_path, btc_30m, *, risk, costs, backtest, kill_at=None, seed=0, **policy):
    features = FeatureConfig()
    full, replay, feats = replay_slice(btc_30m, START, N, features)
    script = make_script(replay, feats, btc_30m, START, costs=costs, seed=seed, **policy)
    asked = RecordingDecider(script.decider())
    bt = backtest_script(replay, feats, script, risk=risk, costs=costs, backtest=backtest,
                         kill_at=kill_at, decider=asked)
    trader, signals, sink, store = build_paper_trader(
        tmp_path, full, replay, script, risk=risk, costs=costs, backtest=backtest,
        features=features)
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
    # the trader reported to the service exactly what the backtester's decider was given
    index = {int(t): i for i, t in enumerate(pd.DatetimeIndex(replay["timestamp"]).asi8)}
    reported = [(index[t], p, h) for t, p, h in signals.requests][:len(asked.calls)]
    assert [(b, h) for b, _, h in reported] == [(b, h) for b, _, h in asked.calls]
    np.testing.assert_allclose([p for _, p, _ in reported], [p for _, p, _ in asked.calls],
                               rtol=1e-9, atol=1e-12)
    assert max(h for _, _, h in asked.calls) > 2  # positions were held for several candles
    return bt, trader, store, signals


def test_market_targets_match_backtest_default_risk(tmp_path, btc_30m):
    """Market orders, the default risk engine (ATR stop, chandelier, break-even, limits) and
    default costs (spread, slippage, impact, 10 % volume cap), long/short, vol-targeted sizes."""
    bt, trader, store, signals = _compare(tmp_path, btc_30m, risk=RiskConfig(),
                                          costs=CostConfig(), backtest=BacktestConfig(),
                                          **LONG_SHORT)
    reasons = set(bt.fills["reason"])
    assert {"target_entry", "target_exit"} <= reasons
    assert reasons & STOPS  # the risk engine's stops acted between the policy's decisions
    assert (bt.fills["side"] < 0).any() and (bt.position < 0).any()  # shorts too
    assert {"target_resize", "target_reverse"} & reasons
    decisions = assert_same_decisions(store, bt)
    assert {"target", "enter", "exit"} <= set(decisions["action"])
    # the stored risk state is the backtester's final risk state
    final = bt.final_risk_state  # type: ignore[attr-defined]
    assert trader.risk_state.peak_equity == pytest.approx(final.peak_equity, rel=1e-9)
    assert set(trader.risk_state.positions) == set(final.positions)
    # the policy's last answer is kept for `trade status`
    book = store.book("BTC/USD")
    assert book["policy_reason"] and book["target_position"] is not None
    bars = store.frame("bars")
    assert bars["target_position"].notna().all() and (bars["policy_reason"] != "").all()


@pytest.mark.parametrize("on_expire", ["cancel", "market"])
def test_limit_targets_match_backtest_partial_fills_and_expiry(tmp_path, btc_30m, on_expire):
    """Passive limit entries and exits (maker fee, fill only when a later candle trades through
    the price), partial fills under a 2 % volume cap on a large account, expiry after two
    candles (the rest cancelled, or sent as a market order), long/short, funding, stops."""
    execution = ExecutionConfig(entry="limit", exit="limit", limit_offset_bps=2.0,
                                expire_bars=2, on_expire=on_expire)
    costs = CostConfig(max_participation=0.02, funding_rate_8h=0.0001)
    bt, _, store, _ = _compare(
        tmp_path, btc_30m, risk=RiskConfig(), costs=costs,
        backtest=BacktestConfig(initial_equity=2e6), execution=execution, seed=3,
        **LONG_SHORT)
    fills = trader_fills(store)
    target_fills = fills[fills["reason"].str.startswith("target")]
    maker = target_fills[target_fills["price"] == target_fills["ref_price"]]
    assert len(maker) > 20  # filled passively at the limit price
    orders = store.frame("orders")
    limits = orders[orders["style"] == "limit"]
    assert limits["limit_price"].notna().all() and len(limits) > 20
    per_order = fills.groupby("client_id")["ts"].nunique()
    assert (per_order.loc[per_order.index.isin(limits["client_id"])] > 1).sum() >= 3  # partial
    decisions = assert_same_decisions(store, bt)
    events = store.frame("events")
    to_market = (events["kind"] == "limit_to_market").sum()
    expired = (decisions["action"] == "expire").sum()
    if on_expire == "cancel":
        assert expired > 5 and to_market == 0
        assert (orders["status"] == "expired").sum() == expired
    else:
        assert expired == 0 and to_market > 5
        after = orders[orders["intent"].str.endswith(":to_market")]
        assert len(after) == to_market and (after["style"] == "market").all()
        taker = target_fills[target_fills["client_id"].isin(after["client_id"])]
        assert len(taker) > 0 and (taker["price"] != taker["ref_price"]).all()
    assert (bt.position < 0).any() and (bt.position > 0).any()
    assert bt.costs["funding"] != 0


def test_long_only_targets_with_take_profit_time_stop_and_trade_limits(tmp_path, btc_30m):
    """A long-only policy over a longer horizon with take-profit targets (maker fills), time
    stops, a trades-per-day limit and a cooldown after losses, perpetual funding and a 5 %
    volume cap on a large account (market orders split over several candles)."""
    risk = RiskConfig(
        exits=ExitConfig(stop_loss_pct=0.02, take_profit_r=1.0, time_stop_bars=12,
                         chandelier_atr_multiple=None),
        limits=LimitsConfig(max_trades_per_day=4, cooldown_bars_after_loss=3))
    costs = CostConfig(funding_rate_8h=0.0001, max_participation=0.05)
    bt, _, store, _ = _compare(
        tmp_path, btc_30m, risk=risk, costs=costs,
        backtest=BacktestConfig(allow_short=False, initial_equity=1e6), horizon=16,
        entry_margin=1.0, exit_margin=-0.5, min_hold_bars=4, vol_target=0.4, allow_short=False,
        min_change=0.05, seed=5)
    assert {"take_profit", "time_stop"} <= set(bt.fills["reason"])
    assert (bt.position >= 0).all()
    fills = store.frame("fills")
    assert (fills.groupby("client_id")["ts"].nunique() > 1).sum() >= 3  # partial fills
    assert bt.costs["funding"] > 0
    decisions = assert_same_decisions(store, bt)
    assert (decisions["action"] == "reject").any()  # the trade limits refused some entries


def test_kill_switch_file_matches_backtester_kill_at(tmp_path, btc_30m):
    """A kill file seen after candle k's close = the backtester's ``kill_at`` candle k: the
    position is closed at the next open and nothing is traded afterwards."""
    _, replay, feats = replay_slice(btc_30m, START, N, FeatureConfig())
    script = make_script(replay, feats, btc_30m, START, **LONG_SHORT)
    plain = backtest_script(replay, feats, script)
    holding = np.flatnonzero(plain.position != 0)  # kill while a position is open
    kill_at = replay["timestamp"].iloc[int(holding[len(holding) // 2])]
    bt, trader, store, signals = _compare(tmp_path, btc_30m, risk=RiskConfig(),
                                          costs=CostConfig(), backtest=BacktestConfig(),
                                          kill_at=kill_at, **LONG_SHORT)
    fills = store.frame("fills")
    assert fills["reason"].iloc[-1] == "kill_switch"
    assert trader.books["BTC/USD"].pos == 0.0 and trader.account.killed
    assert "kill" in set(store.frame("events")["kind"])
    ticks = store.frame("ticks")
    assert signals.calls == len(ticks) - 1  # killed: no more signals
    assert len(ticks) < N
