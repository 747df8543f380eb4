"""The candle builders (pure): closing rules, completeness across reconnections, and every fault
of a real stream turned into a note, on real Bitfinex candles cut into snapshots and trades."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from candlecast.trading.candle_builder import OhlcvCandleBuilder, TradeCandleBuilder
from candlecast.trading.candles import Bar, bars_from_frame

STEP_MS = 1_800_000
STEP = STEP_MS * 1_000_000
GRACE = 2_000_000_000
SYM = "BTC/USD"


@pytest.fixture(name="bars")
def bars_fixture(btc_30m) -> list[Bar]:
    return bars_from_frame(btc_30m.iloc[6000:6040].reset_index(drop=True))


def _snapshots(bar: Bar) -> list[tuple]:
    """Cumulative snapshots of ``bar`` after each of its four trades (the last equals it)."""
    prices = [bar.open, bar.high, bar.low, bar.close] if bar.close >= bar.open else \
        [bar.open, bar.low, bar.high, bar.close]
    out, hi, lo = [], bar.open, bar.open
    for j, p in enumerate(prices):
        hi, lo = max(hi, p), min(lo, p)
        snap = (bar.open, hi, lo, p, bar.volume * (j + 1) / 4) if j < 3 else tuple(bar[1:])
        out.append((bar.ts // 1_000_000, *snap))
    return out


def _trades(bar: Bar, first_id: int) -> list[tuple[int, str, float, float]]:
    prices = [bar.open, bar.high, bar.low, bar.close]
    ms = bar.ts // 1_000_000
    return [(ms + int(f * STEP_MS), str(first_id + j), p, bar.volume / 4)
            for j, (f, p) in enumerate(zip((0.02, 0.3, 0.6, 0.98), prices, strict=True))]


def _kinds(result) -> list[str]:
    return [n.kind for n in result.notes]


def test_snapshots_close_on_the_next_open_and_equal_the_candle(bars):
    b = OhlcvCandleBuilder([SYM], STEP, GRACE)
    closed = []
    for bar in bars:
        out = b.on_candles(SYM, _snapshots(bar), epoch=0)
        assert out.notes == []
        closed += out.closed
    assert [c.bar for c in closed] == bars[:-1]  # the last is still forming
    assert {c.how for c in closed} == {"next_open"}
    assert b.forming(SYM) == bars[-1]


def test_snapshot_faults_are_noted_and_handled(bars):
    b = OhlcvCandleBuilder([SYM], STEP, GRACE)
    s0, s1 = _snapshots(bars[0]), _snapshots(bars[1])
    out = b.on_candles(SYM, [s0[0], s0[2], s0[1], s0[2], s0[3]], 0)  # 1 and 2 swapped, repeated
    assert _kinds(out) == ["out_of_order", "duplicate"]
    out = b.on_candles(SYM, [s1[0]], 0)
    assert [c.bar for c in out.closed] == [bars[0]]  # the older snapshot did not win
    # the exchange revises candle 0 after it was handed on; an older snapshot of it is ignored
    revised = (s0[3][0], *bars[0][1:5], bars[0].volume * 1.5)
    out = b.on_candles(SYM, [s0[1], revised, revised], 0)
    assert _kinds(out) == ["out_of_order", "revised", "duplicate"]
    assert out.revised[0].bar == Bar(bars[0].ts, *revised[1:])
    assert "volume" in out.notes[1].message and "traded on the earlier values" in \
        out.notes[1].message
    bad = (s1[1][0], -1.0, *s1[1][2:])
    off_grid = (s1[1][0] + 60_000, *s1[1][1:])
    assert _kinds(b.on_candles(SYM, [bad, off_grid], 0)) == ["malformed", "malformed"]
    assert b.forming(SYM) == Bar(bars[1].ts, *s1[0][1:])
    # a candle between the last closed one and the forming one: left to the REST backfill
    b.on_candles(SYM, [_snapshots(bars[3])[0]], 0)
    out = b.on_candles(SYM, [_snapshots(bars[2])[3]], 0)
    assert _kinds(out) == ["out_of_order"] and out.closed == []


def test_snapshot_candle_incomplete_after_a_reconnection(bars):
    """A disconnect after a candle's last snapshot: its end may be missing (REST takes it). A
    reconnection inside a candle is fine: the next snapshot is cumulative."""
    b = OhlcvCandleBuilder([SYM], STEP, GRACE)
    s0, s1, s2 = (_snapshots(x) for x in bars[:3])
    b.on_candles(SYM, s0[:2], epoch=0)
    b.on_candles(SYM, s0[2:], epoch=1)  # reconnected mid-candle, snapshots continue
    out = b.on_candles(SYM, s1[:3], epoch=1)
    assert [c.bar for c in out.closed] == [bars[0]]
    out = b.on_candles(SYM, s2[:1], epoch=2)  # dropped after candle 1's third snapshot
    assert out.closed == [] and _kinds(out) == ["incomplete"]
    assert b.last_closed(SYM) == bars[1].ts


def test_grace_closes_only_a_healthy_candle(bars):
    b = OhlcvCandleBuilder([SYM], STEP, GRACE)
    b.on_candles(SYM, _snapshots(bars[0]), 0)
    close = bars[0].ts + STEP
    assert b.close_due(SYM, close + GRACE - 1, 0, True).closed == []  # not due yet
    out = b.close_due(SYM, close + GRACE, 0, True)
    assert [(c.bar, c.how) for c in out.closed] == [(bars[0], "grace")]
    b.on_candles(SYM, _snapshots(bars[1]), 0)
    out = b.close_due(SYM, close + STEP + GRACE, 0, healthy=False)
    assert out.closed == [] and _kinds(out) == ["incomplete"]
    late = b.on_candles(SYM, _snapshots(bars[1])[3:], 0)  # its final snapshot after giving up
    assert _kinds(late) == ["late"]


def test_trade_candles_are_exact_in_any_arrival_order(bars):
    """Open/close by time, extremes, and the volume summed exactly (= math.fsum of the amounts),
    however the trades of a candle are ordered on the wire; a naive running sum depends on the
    order."""
    rng = random.Random(3)
    b = TradeCandleBuilder([SYM], STEP, GRACE)
    b.on_trades(SYM, [], 0, now_ns=bars[0].ts - 1)  # connected before the first candle opened
    closed, expected, order_dependent = [], [], 0
    for i, bar in enumerate(bars):
        chunk = [(ms, tid, p, bar.volume * w) for (ms, tid, p, _), w in
                 zip(_trades(bar, 10 * i), (0.1, 0.2, 0.3, 0.4), strict=True)]
        expected.append(bar._replace(volume=math.fsum(t[3] for t in chunk)))
        rng.shuffle(chunk)
        naive = ((chunk[0][3] + chunk[1][3]) + chunk[2][3]) + chunk[3][3]
        order_dependent += naive != expected[-1].volume
        out = b.on_trades(SYM, chunk, 0, now_ns=bar.ts + STEP // 2)
        assert out.notes == []
        closed += [c.bar for c in out.closed]
    assert closed == expected[:-1]
    assert order_dependent > 0


def test_trade_faults_are_noted_and_handled(bars):
    b = TradeCandleBuilder([SYM], STEP, GRACE)
    b.on_trades(SYM, [], 0, now_ns=bars[0].ts - 1)
    t0, t1, t2 = _trades(bars[0], 0), _trades(bars[1], 10), _trades(bars[2], 20)
    out = b.on_trades(SYM, [t0[0], t0[1], t0[1], t0[2], t0[3]], 0, bars[0].ts)
    assert _kinds(out) == ["duplicate"]
    out = b.on_trades(SYM, t1[:1], 0, bars[1].ts)
    assert [c.bar for c in out.closed] == [bars[0]]
    # a trade of candle 0 arriving after it was handed on: a revision (a repeat is a duplicate)
    late = (bars[0].ts // 1_000_000 + int(0.99 * STEP_MS), "9", bars[0].close, bars[0].volume)
    out = b.on_trades(SYM, [late, late, t0[3]], 0, bars[1].ts)
    assert _kinds(out) == ["revised", "duplicate", "duplicate"]
    assert out.revised[0].bar == bars[0]._replace(volume=bars[0].volume * 2)
    # a trade that cannot be used: its candle lacks it, so the stream does not hand it on
    out = b.on_trades(SYM, [*t1[1:2], (t1[2][0], "x", math.nan, 1.0), *t1[2:]], 0, bars[1].ts)
    out.extend(b.on_trades(SYM, t2[:1], 0, bars[2].ts))
    assert _kinds(out) == ["malformed", "incomplete"] and out.closed == []


def test_trade_candles_need_one_connection_from_open_to_close(bars):
    """Trades are not cumulative: the candle in progress when a connection starts, or in which
    it drops, has missing trades and is never handed on from the stream."""
    b = TradeCandleBuilder([SYM], STEP, GRACE)
    t = [_trades(bar, 10 * i) for i, bar in enumerate(bars[:4])]
    out = b.on_trades(SYM, t[0][1:], 0, now_ns=bars[0].ts + STEP // 2)  # joined mid-candle
    out.extend(b.on_trades(SYM, t[1], 0, now_ns=bars[1].ts + STEP // 2))
    assert out.closed == [] and _kinds(out) == ["incomplete"]
    out = b.on_trades(SYM, t[2][:1], 0, now_ns=bars[2].ts + STEP // 2)
    assert [c.bar for c in out.closed] == [bars[1]]  # the first one seen from its open
    out = b.on_trades(SYM, t[2][1:], 1, now_ns=bars[2].ts + STEP * 3 // 4)  # reconnected
    out.extend(b.on_trades(SYM, t[3], 1, now_ns=bars[3].ts + STEP // 2))
    assert out.closed == [] and _kinds(out) == ["incomplete"]
    b.mark_delivered(SYM, bars[3])  # the feed took candle 3 from REST: forming one dropped
    assert b.forming(SYM) is None and b.last_closed(SYM) == bars[3].ts
    assert _kinds(b.on_trades(SYM, t[3][:1], 1, bars[3].ts + STEP)) == ["late"]


def test_exact_sum_matches_fsum():
    from candlecast.trading.candle_builder import _ExactSum

    rng = np.random.default_rng(0)
    values = (rng.lognormal(0, 3, 5000) * rng.choice([-1, 1], 5000)).tolist()
    acc = _ExactSum()
    for v in values:
        acc.add(v)
    assert acc.value() == math.fsum(values)
