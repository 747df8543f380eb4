"""RiskEngine.hold (the simulators' fast path) against the per-bar calls it replaces.

A trader walks real hourly BTC candles bar by bar with check_exit + on_bar_close (opening a
new position after each exit, alternating sides), recording the state after every bar. From
many bars of that walk, hold is asked to advance the recorded state; it must stop exactly at
the walk's next bar where check_exit hits or on_bar_close decides something, and return the
walk's state (every field, bit for bit) and funding paid just before it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from candlecast.risk import (
    ExitConfig,
    HoldBars,
    LimitsConfig,
    Reason,
    RiskConfig,
    RiskEngine,
    SizingConfig,
)
from candlecast.risk.hold import mirrored

SYM = "BTC/USD"
ALL_EXITS = ExitConfig(stop_loss_pct=0.03, stop_atr_multiple=2.0, take_profit_r=4.0,
                       trailing_pct=0.02, chandelier_atr_multiple=2.5, breakeven_trigger_r=0.7,
                       time_stop_bars=60)
TIGHT = LimitsConfig(max_daily_loss=0.004, max_drawdown=0.02, drawdown_scale_start=None,
                     drawdown_scale_end=None, max_trades_per_day=None)
CONFIGS = {
    "default": RiskConfig(),
    "all_exits_tight_limits": RiskConfig(exits=ALL_EXITS, limits=TIGHT),
    "all_exits_no_close_on_halt": RiskConfig(
        exits=ALL_EXITS, limits=TIGHT.model_copy(update={"close_on_halt": False})),
    "trailing_only": RiskConfig(
        sizing=SizingConfig(method="fixed_notional"),
        exits=ExitConfig(stop_atr_multiple=None, chandelier_atr_multiple=None,
                         breakeven_trigger_r=None, trailing_pct=0.01, take_profit_pct=0.05),
        limits=LimitsConfig(max_drawdown=0.05, close_on_halt=False)),
    "plain": RiskConfig.plain(),
}


@pytest.fixture(scope="module")
def bars(btc_1h):
    c = btc_1h.sort_values("timestamp").reset_index(drop=True).iloc[-3000:]
    high, low, close = (c[k].to_numpy(dtype=float) for k in ("high", "low", "close"))
    prev = np.concatenate([[close[0]], close[:-1]])
    tr = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))
    atr = pd.Series(tr).rolling(14).mean().to_numpy()
    atr[100:110] = np.nan  # a hole: no chandelier update on those bars
    return {
        "ts": pd.DatetimeIndex(c["timestamp"]).asi8.tolist(),
        "open": c["open"].to_numpy(dtype=float).tolist(),
        "high": high.tolist(), "low": low.tolist(), "close": close.tolist(),
        "atr": atr.tolist(),
        "funding": (3e-5 * np.cos(np.arange(len(c)) / 5.0)).tolist(),  # paid or received
    }


def walk(engine, b, funding):
    """The reference: per-bar calls; returns per-bar (state before, cash, units, paid before)
    and the set of bars where the engine acted (an exit level hit or a decision)."""
    n = len(b["close"])
    fund = b["funding"] if funding else None
    state = engine.start(10_000.0, b["ts"][0])
    cash, units, paid, side = 10_000.0, 0.0, 0.0, 1
    before, events = [], set()
    for u in range(n):
        before.append((state, cash, units, paid))
        if units == 0.0:  # open at this bar's open, sized by the engine
            if state.drawdown_halted:  # the operator resumes at once (more trades to check)
                state = engine.reset_drawdown_halt(state, cash - paid)
            d = engine.decide_entry(state, SYM, side, b["ts"][u], cash - paid, b["open"][u],
                                    b["atr"][u - 1] if u else math.nan)
            if d.qty > 0:
                state, _ = engine.on_fill(state, SYM, side, d.qty, b["open"][u], 0.0,
                                          b["ts"][u], b["atr"][u - 1] if u else math.nan)
                cash -= side * d.qty * b["open"][u]
                units = side * d.qty
                side = -side
            events.add(u)
            continue
        hit = engine.check_exit(state.positions[SYM], b["open"][u], b["high"][u], b["low"][u])
        close = b["close"][u]
        if fund is not None:
            paid += units * close * fund[u]
        equity = cash - paid + units * close
        state, decisions = engine.on_bar_close(state, b["ts"][u], equity,
                                               {SYM: (b["high"][u], b["low"][u], close,
                                                      b["atr"][u])})
        if hit is not None or decisions:
            events.add(u)
        if hit is not None or any(d.action == "exit" for d in decisions):
            qty = abs(units)  # out at the close (the walk only needs some exit)
            state, _ = engine.on_fill(state, SYM, -1 if units > 0 else 1, qty, close, 0.0,
                                      b["ts"][u])
            cash += units * close
            units = 0.0
    before.append((state, cash, units, paid))
    return before, sorted(events)


@pytest.mark.parametrize("funding", [False, True], ids=["no-funding", "funding"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_hold_stops_where_the_per_bar_calls_act_and_returns_their_state(bars, name, funding):
    engine = RiskEngine(CONFIGS[name], "1h")
    before, events = walk(engine, bars, funding)
    hb = HoldBars(bars["ts"], bars["high"], bars["low"], bars["close"], bars["atr"],
                  bars["funding"] if funding else None)
    mirrored_hb = hb._replace(mirror=mirrored(hb))
    n = len(bars["close"])
    checked = advanced = 0
    for start in range(1, n - 1, 3):
        state, cash, units, paid = before[start]
        if units == 0.0:
            continue
        end = min(n, start + 150)
        got_state, got_u, got_paid = engine.hold(state, SYM, hb, start, end, cash, units, paid)
        nxt = next((e for e in events if e >= start), n)
        want_u = min(nxt, end)
        want_state, _, _, want_paid = before[want_u]
        assert got_u == want_u, (start, got_u, want_u)
        assert got_state.to_dict() == want_state.to_dict(), start
        assert got_paid == want_paid
        if got_u == start:
            assert got_state is state  # nothing advanced: the very same state back
        if units < 0:  # a short reads the mirrored bars: built once, or negated per read
            again = engine.hold(state, SYM, mirrored_hb, start, end, cash, units, paid)
            assert (again[0].to_dict(), again[1], again[2]) == (want_state.to_dict(), want_u,
                                                                want_paid)
        checked += 1
        advanced += got_u - start
    assert checked > 200 and advanced > 2000  # the comparison covered real trades


def test_the_walk_exercises_every_exit_and_limit(bars):
    """The configurations above do reach what hold must stop at (else the test is hollow)."""
    seen = set()
    for name in ("all_exits_tight_limits", "all_exits_no_close_on_halt", "trailing_only"):
        engine = RiskEngine(CONFIGS[name], "1h")
        before, _ = walk(engine, bars, True)
        for state, *_ in before:
            for pos in state.positions.values():
                seen.add(pos.stop_reason)
            if state.halted_until_day >= 0:
                seen.add("daily_halt")
            if state.drawdown_halted:
                seen.add("drawdown_halt")
    assert {Reason.STOP_LOSS, Reason.TRAILING_STOP, Reason.CHANDELIER_STOP,
            Reason.BREAKEVEN_STOP, "daily_halt", "drawdown_halt"} <= seen


def test_hold_returns_at_once_when_it_cannot_hold(bars):
    engine = RiskEngine(RiskConfig(), "1h")
    hb = HoldBars(bars["ts"], bars["high"], bars["low"], bars["close"], bars["atr"])
    s = engine.start(10_000.0, bars["ts"][0])
    assert engine.hold(s, SYM, hb, 1, 50, 10_000.0, 0.0) == (s, 1, 0.0)  # flat
    s, _ = engine.on_fill(s, SYM, 1, 0.01, bars["open"][1], 0.0, bars["ts"][1], 500.0)
    cash = 10_000.0 - 0.01 * bars["open"][1]
    killed = engine.kill(s)
    assert engine.hold(killed, SYM, hb, 2, 50, cash, 0.01)[1] == 2  # every close exits
    assert engine.hold(s, SYM, hb, 5, 5, cash, 0.01)[1] == 5  # empty range
    assert engine.hold(s, "ETH/USD", hb, 2, 50, cash, 0.01)[1] == 2  # not this symbol
    assert engine.hold(s, SYM, hb, 2, 50, cash, 0.01)[1] > 2  # and it does hold
    assert engine.hold(s, SYM, hb, 2, 50, cash - 600.0, 0.01)[1] == 2  # -6 %: daily-loss halt


def per_bar(engine, state, hb, opens, start, end, cash, units, paid=0.0):
    """What hold replaces: check_exit then on_bar_close on each bar until one acts."""
    for u in range(start, end):
        if engine.check_exit(state.positions[SYM], opens[u], hb.high[u], hb.low[u]):
            return state, u, paid
        close = hb.close[u]
        pay = paid + units * close * hb.funding[u] if hb.funding is not None else paid
        new, decisions = engine.on_bar_close(state, hb.timestamp[u], cash - pay + units * close,
                                              {SYM: (hb.high[u], hb.low[u], close, hb.atr[u])})
        if decisions:
            return state, u, paid
        state, paid = new, pay
    return state, end, paid


def hand_bars(highs, lows, closes, atrs, start="2024-03-04 20:00"):
    ts = pd.date_range(start, periods=len(highs), freq="1h", tz="UTC").asi8.tolist()
    return HoldBars(ts, [float(x) for x in highs], [float(x) for x in lows],
                    [float(x) for x in closes], [float(x) for x in atrs])


def test_hold_matches_the_engine_on_exact_ties():
    """Levels and equities landing exactly on a threshold: the rules' strict/non-strict
    comparisons and the first-rule-wins order must be the engine's, not approximately."""
    no_limits = LimitsConfig(max_daily_loss=None, max_drawdown=None)
    cases = [
        # trailing and chandelier candidates tie at 50: the trailing rule (first) names it
        (ExitConfig(stop_loss_pct=0.6, stop_atr_multiple=None, trailing_pct=0.5,
                    chandelier_atr_multiple=2.0, breakeven_trigger_r=None),
         no_limits, [100, 100, 100], [99, 99, 99], [100, 100, 100], [25, 25, 25]),
        # the trailing candidate equals the initial stop (50): the stop-loss reason stays
        (ExitConfig(stop_loss_pct=0.5, stop_atr_multiple=None, trailing_pct=0.5,
                    chandelier_atr_multiple=None, breakeven_trigger_r=None),
         no_limits, [100, 100, 100, 100], [99, 99, 99, 99], [100, 100, 100, 100], [1, 1, 1, 1]),
        # a high one ulp above the best price still moves the best price and the stop
        (ExitConfig(stop_loss_pct=0.5, stop_atr_multiple=None, trailing_pct=0.5,
                    chandelier_atr_multiple=None, breakeven_trigger_r=None),
         no_limits, [100, math.nextafter(100, 200), 100], [99, 99, 99], [100, 100, 100],
         [1, 1, 1]),
        # the chandelier puts the stop exactly at the entry, then break-even triggers on a
        # level it does not beat: the reason stays chandelier
        (ExitConfig(stop_loss_pct=0.4, stop_atr_multiple=None, chandelier_atr_multiple=1.0,
                    breakeven_trigger_r=2.6),
         no_limits, [200, 204, 204, 204], [150, 150, 150, 150], [180, 180, 180, 180],
         [100, 1000, 1000, 1000]),
        # a low exactly at the stop exits (<=), one cent above does not
        (ExitConfig(stop_loss_pct=0.05, stop_atr_multiple=None, chandelier_atr_multiple=None,
                    breakeven_trigger_r=None),
         no_limits, [100, 100, 100, 100], [95.01, 95.01, 95.0, 95.0], [99, 99, 99, 99],
         [1, 1, 1, 1]),
        # a high exactly at the target exits
        (ExitConfig(stop_loss_pct=0.05, stop_atr_multiple=None, take_profit_pct=0.05,
                    chandelier_atr_multiple=None, breakeven_trigger_r=None),
         no_limits, [104.99, 104.99, 105.0, 105], [99, 99, 99, 99], [100, 100, 100, 100],
         [1, 1, 1, 1]),
        # equity exactly at the daily-loss floor (100 units at 95 = 9,500 = 10,000 x 0.95)
        (ExitConfig(stop_loss_pct=0.5, stop_atr_multiple=None, chandelier_atr_multiple=None,
                    breakeven_trigger_r=None),
         LimitsConfig(max_daily_loss=0.05, max_drawdown=None),
         [100, 100, 100, 100], [94, 94, 94, 94], [95.01, 95.0, 96, 96], [1, 1, 1, 1]),
    ]
    for exits_cfg, lim, highs, lows, closes, atrs in cases:
        engine = RiskEngine(RiskConfig(sizing=SizingConfig(method="fixed_notional"),
                                       exits=exits_cfg, limits=lim), "1h")
        hb = hand_bars(highs, lows, closes, atrs)
        s = engine.start(10_000.0, hb.timestamp[0])
        s, _ = engine.on_fill(s, SYM, 1, 100.0, 100.0, 0.0, hb.timestamp[0])
        want = per_bar(engine, s, hb, closes, 0, len(highs), 0.0, 100.0)
        got = engine.hold(s, SYM, hb, 0, len(highs), 0.0, 100.0)
        assert (got[1], got[2]) == (want[1], want[2])
        assert got[0].to_dict() == want[0].to_dict()
        assert got[1] > 0  # (each case advances at least one bar)
        # an account whose units do not match the position's side is still marked exactly
        odd = per_bar(engine, s, hb, closes, 0, len(highs), 20_000.0, -100.0)
        assert engine.hold(s, SYM, hb, 0, len(highs), 20_000.0, -100.0)[1] == odd[1]


def test_hold_applies_a_break_even_the_state_already_owes():
    """A state can meet the break-even trigger before any new high (e.g. after an add moved
    the entry price): on_bar_close moves the stop at the next close; so must hold."""
    engine = RiskEngine(RiskConfig(sizing=SizingConfig(method="fixed_notional"),
                                   exits=ExitConfig(stop_loss_pct=0.05, stop_atr_multiple=None,
                                                    chandelier_atr_multiple=None,
                                                    breakeven_trigger_r=1.0),
                                   limits=LimitsConfig(max_daily_loss=None, max_drawdown=None)))
    hb = hand_bars([101, 101, 101], [99, 99, 99], [100, 100, 100], [1, 1, 1])
    s = engine.start(10_000.0, hb.timestamp[0])
    s, _ = engine.on_fill(s, SYM, 1, 10.0, 100.0, 0.0, hb.timestamp[0])
    owed = dataclasses.replace(s.positions[SYM], extreme=106.0)  # 1.2 R above the entry
    s = dataclasses.replace(s, positions={SYM: owed})
    want = per_bar(engine, s, hb, hb.close, 0, 3, 9_000.0, 10.0)
    got = engine.hold(s, SYM, hb, 0, 3, 9_000.0, 10.0)
    assert want[0].positions[SYM].stop_reason == Reason.BREAKEVEN_STOP
    assert (got[0].to_dict(), got[1], got[2]) == (want[0].to_dict(), want[1], want[2])
