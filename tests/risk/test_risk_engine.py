"""The risk engine's limits and bookkeeping, driven call by call like the live trader does."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest

from candlecast.risk import (
    Action,
    ExitConfig,
    LimitsConfig,
    Reason,
    RiskConfig,
    RiskEngine,
    RiskState,
    SizingConfig,
)

T0 = pd.Timestamp("2024-03-04 00:00", tz="UTC").value
HOUR = 3_600 * 10**9
SYM = "BTC/USD"
NO_EXITS = ExitConfig(stop_atr_multiple=None, chandelier_atr_multiple=None,
                      breakeven_trigger_r=None)
HALF = SizingConfig(method="fixed_notional", notional_fraction=0.5)


def T(hours: int) -> int:
    return T0 + hours * HOUR


def engine(**limits) -> RiskEngine:
    base = {"max_daily_loss": None, "max_drawdown": None, "drawdown_scale_start": None,
            "drawdown_scale_end": None, "max_trades_per_day": None}
    base.update(limits)
    return RiskEngine(RiskConfig(sizing=HALF, exits=NO_EXITS, limits=LimitsConfig(**base)))


def open_close(eng, state, hour_open, hour_close, price_in=100.0, price_out=100.0, sym=SYM):
    state, _ = eng.on_fill(state, sym, 1, 10.0, price_in, 0.0, T(hour_open))
    state, pnl = eng.on_fill(state, sym, -1, 10.0, price_out, 0.0, T(hour_close))
    return state, pnl


def test_daily_loss_halts_entries_until_the_next_utc_day():
    eng = engine(max_daily_loss=0.05)
    s = eng.start(10_000, T(0))
    s, _ = eng.on_fill(s, SYM, 1, 50.0, 100.0, 0.0, T(1))
    s, ds = eng.on_bar_close(s, T(1), 9_600.0, {SYM: (100.0, 92.0, 92.0, 1.0)})
    assert ds == ()  # -4 %: not yet
    s, ds = eng.on_bar_close(s, T(2), 9_400.0, {SYM: (93.0, 88.0, 88.0, 1.0)})
    assert [(d.action, d.reason) for d in ds] == [
        (Action.HALT, Reason.HALT_DAILY_LOSS), (Action.EXIT, Reason.HALT_DAILY_LOSS)]
    s, pnl = eng.on_fill(s, SYM, -1, 50.0, 88.0, 0.0, T(3))
    assert pnl == pytest.approx(-600.0) and not s.positions
    d = eng.decide_entry(s, SYM, 1, T(23), 9_400.0, 90.0)
    assert (d.action, d.reason) == (Action.REJECT, Reason.REJECT_DAILY_LOSS_HALT)
    d = eng.decide_entry(s, SYM, 1, T(24), 9_400.0, 90.0)  # next UTC day
    assert (d.action, d.reason) == (Action.ENTER, Reason.SIGNAL_ENTRY)


def test_day_start_equity_is_the_last_equity_of_the_previous_day():
    eng = engine(max_daily_loss=0.05)
    s = eng.start(10_000, T(0))
    s, _ = eng.on_fill(s, SYM, 1, 50.0, 100.0, 0.0, T(1))
    s, _ = eng.on_bar_close(s, T(23), 12_000.0, {SYM: (140, 139, 140, 1.0)})
    # next day: -5 % of 12,000 (not of 10,000) halts
    s, ds = eng.on_bar_close(s, T(24), 11_400.0, {SYM: (140, 128, 128, 1.0)})
    assert s.day_start_equity == 12_000.0
    assert Reason.HALT_DAILY_LOSS in [d.reason for d in ds]


def test_drawdown_halt_stops_entries_and_closes_until_reset():
    eng = engine(max_drawdown=0.30)
    s = eng.start(10_000, T(0))
    s, _ = eng.on_fill(s, SYM, 1, 100.0, 100.0, 0.0, T(1))
    s, ds = eng.on_bar_close(s, T(1), 11_000.0, {SYM: (110, 100, 110, 1.0)})
    assert ds == () and s.peak_equity == 11_000.0
    s, ds = eng.on_bar_close(s, T(2), 7_690.0, {SYM: (110, 77, 77, 1.0)})  # -30.1 % of peak
    assert [(d.action, d.reason) for d in ds] == [
        (Action.HALT, Reason.HALT_MAX_DRAWDOWN), (Action.EXIT, Reason.HALT_MAX_DRAWDOWN)]
    s, _ = eng.on_fill(s, SYM, -1, 100.0, 77.0, 0.0, T(3))
    for hour in (4, 30, 500):  # days later: still halted
        d = eng.decide_entry(s, SYM, 1, T(hour), 7_700.0, 77.0)
        assert d.reason == Reason.REJECT_DRAWDOWN_HALT
    s = eng.reset_drawdown_halt(s, 7_700.0)
    assert eng.decide_entry(s, SYM, 1, T(501), 7_700.0, 77.0).action == Action.ENTER


def test_drawdown_scales_size_linearly_between_thresholds():
    eng = engine(drawdown_scale_start=0.10, drawdown_scale_end=0.20, drawdown_scale_floor=0.25)
    s = eng.start(10_000, T(0))
    d = eng.decide_entry(s, SYM, 1, T(1), 8_500.0, 100.0)  # drawdown 15 %: halfway
    assert d.qty == pytest.approx(0.5 * 8_500 / 100 * 0.625)
    assert Reason.DRAWDOWN_SCALED in d.notes
    d = eng.decide_entry(s, SYM, 1, T(1), 7_000.0, 100.0)  # beyond the end: the floor
    assert d.qty == pytest.approx(0.5 * 7_000 / 100 * 0.25)
    d = eng.decide_entry(s, SYM, 1, T(1), 9_500.0, 100.0)
    assert d.qty == pytest.approx(0.5 * 9_500 / 100) and d.notes == ()


def test_max_trades_per_day_and_cooldown_after_a_loss():
    eng = engine(max_trades_per_day=2, cooldown_bars_after_loss=3)
    s = eng.start(10_000, T(0))
    s, pnl = open_close(eng, s, 1, 2, 100.0, 101.0)  # a win: no cooldown
    assert pnl > 0 and eng.decide_entry(s, SYM, 1, T(2), 1e4, 100.0).action == Action.ENTER
    s, pnl = open_close(eng, s, 3, 5, 100.0, 99.0)  # a loss closed at bar 5
    assert pnl < 0
    d = eng.decide_entry(s, SYM, 1, T(6), 1e4, 100.0)
    assert d.reason == Reason.REJECT_MAX_TRADES_PER_DAY  # checked before the cooldown
    s2 = eng.start(10_000, T(0))
    s2, _ = open_close(eng, s2, 3, 5, 100.0, 99.0)
    assert [eng.decide_entry(s2, SYM, 1, T(h), 1e4, 100.0).reason for h in (5, 7, 8)] == [
        Reason.REJECT_COOLDOWN, Reason.REJECT_COOLDOWN, Reason.SIGNAL_ENTRY]
    # the trade counter resets on the next UTC day
    assert eng.decide_entry(s, SYM, 1, T(24), 1e4, 100.0).action == Action.ENTER


def test_max_concurrent_positions_and_already_open():
    eng = engine()
    eng = RiskEngine(eng.config.model_copy(update={
        "limits": eng.config.limits.model_copy(update={"max_concurrent_positions": 2}),
        "sizing": SizingConfig(method="fixed_notional", notional_fraction=0.3)}))
    s = eng.start(10_000, T(0))
    s, _ = eng.on_fill(s, "BTC/USD", 1, 10.0, 100.0, 0.0, T(1))
    assert eng.decide_entry(s, "BTC/USD", 1, T(2), 1e4, 100.0).reason == (
        Reason.REJECT_ALREADY_OPEN)
    s, _ = eng.on_fill(s, "ETH/USD", -1, 10.0, 100.0, 0.0, T(1))
    d = eng.decide_entry(s, "LTC/USD", 1, T(2), 1e4, 100.0)
    assert (d.action, d.reason) == (Action.REJECT, Reason.REJECT_MAX_POSITIONS)
    # a reversal of an open symbol is allowed (the old position is being closed)
    d = eng.decide_entry(s, "BTC/USD", -1, T(2), 1e4, 100.0, replacing=True)
    assert d.action == Action.ENTER


def test_gross_exposure_counts_other_positions_at_their_marks():
    eng = RiskEngine(RiskConfig(sizing=SizingConfig(method="fixed_notional", notional_fraction=1,
                                                    max_gross_exposure=1.0),
                                exits=NO_EXITS,
                                limits=LimitsConfig(max_concurrent_positions=3)))
    s = eng.start(10_000, T(0))
    s, _ = eng.on_fill(s, "BTC/USD", 1, 40.0, 100.0, 0.0, T(1))  # 4,000 at entry
    d = eng.decide_entry(s, "ETH/USD", 1, T(2), 1e4, 50.0)
    assert d.qty == pytest.approx(6_000 / 50) and Reason.CAPPED_GROSS_EXPOSURE in d.notes
    d = eng.decide_entry(s, "ETH/USD", 1, T(2), 1e4, 50.0, marks={"BTC/USD": 250.0})
    assert (d.action, d.reason) == (Action.REJECT, Reason.REJECT_GROSS_EXPOSURE)


def test_kill_switch_rejects_entries_and_exits_everything():
    eng = RiskEngine(RiskConfig(sizing=HALF, exits=NO_EXITS,
                                limits=LimitsConfig(close_on_halt=False,
                                                    max_concurrent_positions=2)))
    s = eng.start(10_000, T(0))
    s, _ = eng.on_fill(s, "BTC/USD", 1, 10.0, 100.0, 0.0, T(1))
    s, _ = eng.on_fill(s, "ETH/USD", 1, 10.0, 100.0, 0.0, T(1))
    s = eng.kill(s, "operator")
    assert eng.decide_entry(s, "LTC/USD", 1, T(2), 1e4, 10.0).reason == (
        Reason.REJECT_KILL_SWITCH)
    s, ds = eng.on_bar_close(s, T(2), 10_000.0, {})
    assert sorted((d.symbol, d.reason) for d in ds) == [
        ("BTC/USD", Reason.KILL_SWITCH), ("ETH/USD", Reason.KILL_SWITCH)]
    s = eng.reset_kill_switch(s)
    s, ds = eng.on_bar_close(s, T(3), 10_000.0, {})
    assert ds == ()


def test_time_stop_and_stop_levels_set_from_the_fill():
    eng = RiskEngine(RiskConfig(exits=ExitConfig(stop_atr_multiple=2.0, take_profit_r=3.0,
                                                 chandelier_atr_multiple=None,
                                                 breakeven_trigger_r=None, time_stop_bars=2)))
    s = eng.start(10_000, T(0))
    d = eng.decide_entry(s, SYM, 1, T(0), 10_000.0, 100.0, atr=1.5)
    assert d.qty == pytest.approx(100 / 3.0)  # 1% risk over a 3.0 stop distance
    assert (d.stop, d.target) == (pytest.approx(97.0), pytest.approx(109.0))
    s, _ = eng.on_fill(s, SYM, 1, d.qty, 101.0, 0.0, T(1), atr=1.5)
    pos = s.positions[SYM]
    assert (pos.stop, pos.target, pos.entry_bar) == (98.0, 110.0, T(1) // HOUR)
    assert eng.check_exit(pos, 101.0, 111.0, 97.5) == (98.0, Reason.STOP_LOSS, False)
    s, ds = eng.on_bar_close(s, T(2), 1e4, {SYM: (102, 100, 101, 1.5)})
    assert ds == ()
    s, ds = eng.on_bar_close(s, T(3), 1e4, {SYM: (102, 100, 101, 1.5)})
    assert [(d.action, d.reason) for d in ds] == [(Action.EXIT, Reason.TIME_STOP)]


def test_entry_needs_a_stop_when_one_is_configured():
    eng = RiskEngine(RiskConfig())
    s = eng.start(10_000, T(0))
    d = eng.decide_entry(s, SYM, 1, T(0), 1e4, 100.0, atr=math.nan)
    assert (d.action, d.reason) == (Action.REJECT, Reason.REJECT_MISSING_VOLATILITY)
    with pytest.raises(ValueError, match="below the entry"):
        eng.decide_entry(s, SYM, 1, T(0), 1e4, 100.0, stop=101.0)
    with pytest.raises(ValueError, match="side must be"):
        eng.decide_entry(s, SYM, 0, T(0), 1e4, 100.0)


def test_realized_pnl_is_net_of_entry_and_exit_fees_and_partial_closes():
    eng = engine()
    s = eng.start(10_000, T(0))
    s, pnl = eng.on_fill(s, SYM, 1, 10.0, 100.0, 1.0, T(1))
    assert pnl == 0.0
    s, pnl = eng.on_fill(s, SYM, -1, 4.0, 110.0, 0.44, T(2))
    assert pnl == pytest.approx(4 * 10 - 0.44 - 0.4)
    assert s.positions[SYM].qty == pytest.approx(6.0)
    s, pnl = eng.on_fill(s, SYM, -1, 8.0, 120.0, 0.96, T(3))  # closes 6, opens a 2-unit short
    assert pnl == pytest.approx(6 * 20 - 0.96 * 6 / 8 - 0.6)
    assert s.positions[SYM].side == -1 and s.positions[SYM].qty == pytest.approx(2.0)
    assert s.trades_today == 2


def test_state_is_a_json_round_trippable_value_and_inputs_are_never_mutated():
    eng = RiskEngine(RiskConfig())
    s = eng.start(10_000, T(0))
    s, _ = eng.on_fill(s, SYM, 1, 10.0, 100.0, 1.0, T(1), atr=2.0)
    before = copy.deepcopy(s)
    s2, ds = eng.on_bar_close(s, T(2), 10_500.0, {SYM: (106.0, 101.0, 105.0, 2.0)})
    eng.decide_entry(s2, "ETH/USD", 1, T(2), 10_500.0, 10.0, atr=0.1)
    eng.kill(s2)
    assert s == before  # the engine returned new objects
    assert s2.positions[SYM].stop > s.positions[SYM].stop
    text = json.dumps(s2.to_dict())
    assert RiskState.from_dict(json.loads(text)) == s2
    d = eng.decide_entry(s2, SYM, 1, T(2), 1e4, 100.0)
    assert json.loads(json.dumps(d.to_dict()))["reason"] == "reject_already_open"
    assert Reason.STOP_LOSS == "stop_loss"
