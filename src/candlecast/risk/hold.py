"""Holding one position through bars where nothing happens: the simulators' fast path.

:func:`hold` is the batch form of the per-bar calls a simulator makes while it holds a single
position with no order working: :meth:`RiskEngine.check_exit` against the bar's range, then
:meth:`RiskEngine.on_bar_close` at its close. It walks the bars in a plain scalar loop (no new
objects per bar) and stops at the first bar where either call would do anything but update
levels: a resting stop or target touched, a limit breached, a forced or time-stop exit. That
bar is left to the per-bar calls, so every decision and reason still comes from them; bars
before it change only the state (trailing/chandelier/break-even stop, best price, peak and
day bookkeeping), and :func:`hold` returns the state those calls would have left, bit for bit
(tested against them on real data with every exit and limit active).

The rules are the ones in :mod:`candlecast.risk.exits` and :mod:`candlecast.risk.limits`,
evaluated with the same floating-point operations in the same order. Shorts are handled in a
mirrored frame (prices negated, which is exact), so one loop serves both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from candlecast.risk.config import RiskConfig
from candlecast.risk.reasons import Reason
from candlecast.risk.state import NS_PER_DAY, PositionRisk, RiskState

_INF = math.inf
_NEVER = 1 << 126  # a timestamp no bar reaches
# enum members bound once: reading ``Reason.X`` costs ~10x a module global in CPython 3.11
_BREAKEVEN, _TRAILING, _CHANDELIER = (Reason.BREAKEVEN_STOP, Reason.TRAILING_STOP,
                                      Reason.CHANDELIER_STOP)


class HoldBars(NamedTuple):
    """Per-bar inputs of :func:`hold`, indexed by bar position (lists, arrays or memoryviews).

    Bars must be valid OHLC candles in time order (``low <= open, close <= high``, increasing
    timestamps, as :func:`candlecast.backtest.prepare_market` guarantees): a resting level is
    then touched during a bar exactly when the bar's range reaches it, so ``open`` is not
    needed.
    ``timestamp`` is the bar's open time in UTC nanoseconds; ``atr`` feeds the chandelier stop
    (NaN or <= 0: no update); ``funding`` is the rate paid on the notional at each close
    (``None``: no funding).
    """

    timestamp: Sequence[int]
    high: Sequence[float]
    low: Sequence[float]
    close: Sequence[float]
    atr: Sequence[float]
    funding: Sequence[float] | None = None
    #: the same bars as a short sees them (:func:`mirrored`); if missing, a short reads the
    #: prices negated one at a time (the same numbers, slower)
    mirror: HoldBars | None = None


def mirrored(bars: HoldBars) -> HoldBars:
    """``bars`` with prices negated and high/low swapped: a short position in them behaves
    exactly like a long in the mirror (negation is exact), which lets :func:`hold` run one
    loop for both sides. Attach the result as ``bars.mirror`` when holding shorts often."""
    neg_high, neg_low, neg_close = (_negated(x) for x in (bars.high, bars.low, bars.close))
    return HoldBars(bars.timestamp, neg_low, neg_high, neg_close, bars.atr, bars.funding)


def _negated(values: Sequence[float]) -> Sequence[float]:
    negative = np.negative(np.asarray(values, dtype=np.float64))
    return memoryview(negative)  # type: ignore[arg-type]


class _Floats(Protocol):
    def __getitem__(self, i: int, /) -> float: ...


class _Negated:
    """``-values[i]`` on demand: the mirror of a sequence without a pass over all of it."""

    __slots__ = ("_values",)

    def __init__(self, values: Sequence[float]) -> None:
        self._values = values

    def __getitem__(self, i: int) -> float:
        return -self._values[i]


class HoldRules(NamedTuple):
    """The configuration numbers :func:`hold` reads (taken once per engine)."""

    close_on_halt: bool
    max_drawdown: float | None
    max_daily_loss: float | None
    time_stop_bars: int | None
    breakeven_trigger_r: float | None
    trailing_pct: float | None
    chandelier_atr_multiple: float | None


def hold_rules(config: RiskConfig) -> HoldRules:
    """The numbers of ``config`` that :func:`hold` needs."""
    lim, ex = config.limits, config.exits
    return HoldRules(lim.close_on_halt, lim.max_drawdown, lim.max_daily_loss, ex.time_stop_bars,
                     ex.breakeven_trigger_r, ex.trailing_pct, ex.chandelier_atr_multiple)


def hold(
    rules: HoldRules,
    bar_ns: int,
    state: RiskState,
    symbol: str,
    bars: HoldBars,
    start: int,
    end: int,
    cash: float,
    units: float,
    paid: float = 0.0,
) -> tuple[RiskState, int, float]:
    """Advance ``state`` (one open position, in ``symbol``) through bars ``start, start+1, ...``
    (before ``end``) while nothing happens; see :meth:`RiskEngine.hold`."""
    pos = state.positions.get(symbol)
    close_on_halt, max_dd, max_daily, time_stop, be_r, trailing, k = rules
    if (pos is None or len(state.positions) != 1 or state.kill_switch or start >= end
            or (state.drawdown_halted and close_on_halt)):
        return state, start, paid  # nothing to hold, or every close forces an exit
    day = state.day
    day_lo = day * NS_PER_DAY
    day_hi = day_lo + NS_PER_DAY
    ts_seq = bars.timestamp
    if ts_seq[start] < day_lo:
        return state, start, paid  # a bar before the state's day: not a continuation
    time_end = (pos.entry_bar + time_stop) * bar_ns if time_stop is not None else _NEVER
    next_check = day_hi if day_hi < time_end else time_end  # next day roll or time stop

    # Limits. The engine halts when equity <= floor at a close; both floors are the engine's
    # own products (peak x (1 - max_drawdown), day start x (1 - max_daily_loss)). A close
    # above the old peak cannot breach the drawdown floor, so testing against the floor of
    # the previous peak is the same test. A day whose daily-loss halt is on forces an exit at
    # every close when close_on_halt (floor +inf), else skips the daily test (floor -inf).
    dd_keep = 1.0 - max_dd if max_dd is not None and not state.drawdown_halted else None
    daily_keep = 1.0 - max_daily if max_daily is not None else None
    halted_until = state.halted_until_day
    peak, last_eq, start_eq, trades = (state.peak_equity, state.last_equity,
                                       state.day_start_equity, state.trades_today)
    dd_floor = peak * dd_keep if dd_keep is not None else -_INF
    day_floor = _day_floor(day, halted_until, start_eq, daily_keep, close_on_halt)
    floor = dd_floor if dd_floor > day_floor else day_floor

    # the position in the mirrored frame: s * price, so a short looks like a long
    side = pos.side
    s = 1.0 if side > 0 else -1.0
    best_seq: _Floats
    worst_seq: _Floats
    close_seq: _Floats
    if side > 0:
        best_seq, worst_seq, close_seq = bars.high, bars.low, bars.close
    elif bars.mirror is not None:
        best_seq, worst_seq, close_seq = bars.mirror.high, bars.mirror.low, bars.mirror.close
    else:
        best_seq, worst_seq, close_seq = (_Negated(bars.low), _Negated(bars.high),
                                          _Negated(bars.close))
    stop = s * pos.stop if pos.stop == pos.stop else -_INF
    target = s * pos.target if pos.target == pos.target else _INF
    ext, entry, reason, be_done = s * pos.extreme, s * pos.entry_price, pos.stop_reason, (
        pos.breakeven_done)
    risk = pos.initial_risk
    be_wait = be_r is not None and not be_done and risk > 0
    be_thr = be_r * risk if be_wait and be_r is not None else 0.0
    be_due = be_wait and ext - entry >= be_thr
    trail_mult = 1.0 - side * trailing if trailing is not None else None
    # the chandelier candidate extreme - side * k * atr is, mirrored, ext - k * atr

    # Equity = cash - paid + units x close. Without funding it is a non-decreasing function of
    # the mirrored close c = s x close: eq(c) = base + size x c with size > 0, rounded at each
    # step, and rounding is monotone. So the highest close gives the peak, and only a close at
    # or below ``guard`` (a bound padded far beyond rounding error) can reach the floor: only
    # those are tested exactly. With funding ``paid`` moves every bar (and with units of the
    # wrong sign the order flips): then every close is tested (``exact``, guard +inf).
    atr_seq, funding = bars.atr, bars.funding
    base, size = cash - paid, s * units
    exact = funding is not None or not size > 0
    guard = _INF if exact else _guard(floor, base, size)
    top = -_INF  # the highest mirrored close advanced through (no funding)
    rolled_at, before_roll = -1, (day, start_eq, trades)
    u = start
    for u in range(start, end):
        worst = worst_seq[u]
        if worst <= stop:  # check_exit: the bar reaches the resting stop
            break
        best = best_seq[u]
        if best >= target:  # ... or the resting target
            break
        ts = ts_seq[u]
        if ts >= next_check:
            if ts >= time_end:  # time stop at this close
                break
            # a new UTC day starts at the last close's equity (undone if this bar breaks)
            if not exact and u > start:
                last_eq = base + size * close_seq[u - 1]
            rolled_at, before_roll = u, (day, start_eq, trades)
            day, start_eq, trades = ts // NS_PER_DAY, last_eq, 0
            day_hi = (day + 1) * NS_PER_DAY
            next_check = day_hi if day_hi < time_end else time_end
            day_floor = _day_floor(day, halted_until, start_eq, daily_keep, close_on_halt)
            floor = dd_floor if dd_floor > day_floor else day_floor
            if not exact:
                guard = _guard(floor, base, size)
        c = close_seq[u]
        if c <= guard:  # the exact test of the engine
            if funding is None:
                equity = base + size * c
            else:
                close = s * c
                pay = paid + units * close * funding[u]
                equity = cash - pay + units * close
            if equity <= floor:  # a halt (or a forced exit) at this close
                break
            if exact:
                last_eq = equity
                if funding is not None:
                    paid = pay
            if equity > peak:
                peak = equity
                if dd_keep is not None:
                    dd_floor = peak * dd_keep
                    floor = dd_floor if dd_floor > day_floor else day_floor
                    if not exact:
                        guard = _guard(floor, base, size)
        elif c > top:
            top = c
            if dd_keep is not None:  # a new peak raises the drawdown floor now
                equity = base + size * c
                if equity > peak:
                    peak = equity
                    dd_floor = peak * dd_keep
                    floor = dd_floor if dd_floor > day_floor else day_floor
                    guard = _guard(floor, base, size)
        # exits.trail in the mirrored frame (break-even depends on the best price only, so it
        # is tested when that moves, and once up front in case the state already meets it)
        if best > ext:
            ext = best
            if be_wait and ext - entry >= be_thr:
                be_due = True
        if be_due:
            be_due, be_wait, be_done = False, False, True
            if entry > stop:
                stop, reason = entry, _BREAKEVEN
        if trail_mult is not None:
            cand = ext * trail_mult  # s * (extreme * trail_mult): negation is exact
            if cand > stop:
                stop, reason = cand, _TRAILING
        if k is not None:
            atr = atr_seq[u]
            if atr > 0:
                cand = ext - k * atr
                if cand > stop:
                    stop, reason = cand, _CHANDELIER
    else:
        u = end
    if u == start:
        return state, start, paid
    if u == rolled_at:  # the day rolled at the bar that was not advanced
        day, start_eq, trades = before_roll
    if not exact:  # the equity of the last close, and the peak, from the closes
        last_eq = base + size * close_seq[u - 1]
        if top > -_INF:
            high_eq = base + size * top
            if high_eq > peak:
                peak = high_eq
    new_pos = PositionRisk(symbol, side, pos.qty, pos.entry_price, pos.entry_bar,
                           pos.initial_risk, s * stop if stop > -_INF else math.nan, reason,
                           pos.target, s * ext, be_done, pos.fees, pos.realized)
    new = RiskState(peak, last_eq, day, start_eq, trades, halted_until,
                    state.drawdown_halted, state.kill_switch, state.kill_reason,
                    state.cooldown_until_bar, {symbol: new_pos})
    return new, u, paid


def _day_floor(day: int, halted_until: int, start_equity: float, keep: float | None,
               close_on_halt: bool) -> float:
    """The equity at or below which a close on ``day`` makes the engine act on daily loss."""
    if halted_until >= day:  # halted today: every close forces an exit, or none is tested
        return _INF if close_on_halt else -_INF
    return start_equity * keep if keep is not None else -_INF


def _guard(floor: float, base: float, size: float) -> float:
    """A mirrored close above which ``base + size x close`` (``size`` > 0) is surely above
    ``floor`` whatever the rounding: the exact break-even padded by 1e-9 of the magnitudes
    (rounding errs by ~1e-16 of them). +inf (test every close) if that is not a number."""
    if floor == -_INF:
        return -_INF
    q = (floor - base) / size
    pad = 1e-9 * (abs(q) + (abs(base) + abs(floor)) / size)
    guard = q + pad
    return guard if guard == guard else _INF
