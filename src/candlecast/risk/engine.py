"""The risk engine: one object, called the same way by the backtester and the live trader.

It has no clock, no I/O and no hidden state: every method takes the :class:`RiskState` (and
numbers) and returns a new state and/or :class:`Decision` values; inputs are never mutated.
Times are UTC nanoseconds since the epoch (``int``); a bar belongs to the UTC day of its open
time. The call sequence per bar, for backtests and live alike:

1. at the bar's open, the broker fills pending orders -> :meth:`on_fill` for each fill;
2. during the bar, resting stops/targets may trigger -> :meth:`check_exit`, then :meth:`on_fill`;
3. at the bar's close -> :meth:`on_bar_close` (limits, trailing stops, time stops), which may
   return EXIT/HALT decisions; then, for a new signal, :meth:`decide_entry` (ENTER or REJECT)
   or :meth:`exit_decision`. Orders from step 3 fill at the next bar's open.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar, cast

import pandas as pd
from pydantic import BaseModel

from candlecast.data.schema import timeframe_to_timedelta
from candlecast.risk import exits, limits, sizing
from candlecast.risk.config import RiskConfig
from candlecast.risk.hold import HoldBars, hold_rules
from candlecast.risk.hold import hold as hold_position
from candlecast.risk.reasons import Action, Reason
from candlecast.risk.state import NS_PER_DAY, Decision, PositionRisk, RiskState

NAN = math.nan
#: (high, low, close, atr) of one symbol's bar, as passed to :meth:`RiskEngine.on_bar_close`
BarMarks = tuple[float, float, float, float]
_NO_DECISIONS: tuple[Decision, ...] = ()
_QTY_EPS = 1e-12
M = TypeVar("M", bound=BaseModel)
# enum members bound once: reading ``Reason.X`` costs ~10x a module global in CPython 3.11
_ENTER, _REJECT = Action.ENTER, Action.REJECT
_SIGNAL_ENTRY, _STOP_LOSS, _TAKE_PROFIT = Reason.SIGNAL_ENTRY, Reason.STOP_LOSS, Reason.TAKE_PROFIT


def to_ns(timestamp: int | datetime | pd.Timestamp) -> int:
    """UTC nanoseconds since the epoch; naive datetimes are rejected (ambiguous)."""
    if isinstance(timestamp, int):
        return timestamp
    ts = pd.Timestamp(timestamp)
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {timestamp!r} has no timezone; pass a UTC-aware time")
    return int(ts.value)


class RiskEngine:
    """Sizing, exits and limits from a :class:`RiskConfig`, for bars of ``timeframe``."""

    def __init__(self, config: RiskConfig | None = None, timeframe: str = "1h") -> None:
        self.config = config if config is not None else RiskConfig()
        self.timeframe = timeframe
        self.bar_ns = int(timeframe_to_timedelta(timeframe).value)
        self.bars_per_year = 365.0 * NS_PER_DAY / self.bar_ns
        # Plain copies of the numbers read on every call (the config itself stays the truth):
        # CPython 3.11 reads an attribute of a pydantic model ~5x slower than of a plain object
        # (BaseModel defines __getattr__, which turns off attribute-read specialization).
        lim, ex = self.config.limits, self.config.exits
        self._sizing = _plain_view(self.config.sizing)
        self._exits = _plain_view(ex)
        self._limits = _plain_view(lim)
        self._max_dd, self._max_daily = lim.max_drawdown, lim.max_daily_loss
        self._close_on_halt = lim.close_on_halt
        self._time_stop = ex.time_stop_bars
        self._has_initial_stop = ex.has_initial_stop
        self._dd_scaling = lim.drawdown_scale_start is not None
        self._hold_rules = hold_rules(self.config)

    # ---------------------------------------------------------------- state
    def start(self, equity: float, timestamp: int | datetime | pd.Timestamp) -> RiskState:
        """A fresh state for an account worth ``equity`` at ``timestamp``."""
        if not equity > 0:
            raise ValueError(f"starting equity must be > 0, got {equity}")
        day = to_ns(timestamp) // NS_PER_DAY
        return RiskState(peak_equity=equity, last_equity=equity, day=day, day_start_equity=equity)

    def kill(self, state: RiskState, reason: str = "manual") -> RiskState:
        """Engage the kill switch: no entries; the next :meth:`on_bar_close` exits everything."""
        return _evolve(state, kill_switch=True, kill_reason=reason)

    def reset_kill_switch(self, state: RiskState) -> RiskState:
        return _evolve(state, kill_switch=False, kill_reason="")

    def reset_drawdown_halt(self, state: RiskState, equity: float) -> RiskState:
        """Operator action after a drawdown halt: trading resumes with ``equity`` as new peak."""
        return _evolve(state, drawdown_halted=False, peak_equity=equity, last_equity=equity)

    # ---------------------------------------------------------------- decisions
    def decide_entry(
        self,
        state: RiskState,
        symbol: str,
        side: int,
        timestamp: int,
        equity: float,
        price: float,
        atr: float = NAN,
        volatility: float = NAN,
        probability: float = NAN,
        payoff_ratio: float = NAN,
        stop: float = NAN,
        marks: Mapping[str, float] | None = None,
        replacing: bool = False,
        notional_fraction: float = NAN,
        other_notional: float = NAN,
    ) -> Decision:
        """ENTER (with size and reference levels) or REJECT (with the reason) for a signal to
        open ``side`` in ``symbol`` at about ``price``.

        ``atr`` feeds ATR stops, ``volatility`` (std of one bar's return) vol targeting,
        ``probability`` (that the trade wins) and ``payoff_ratio`` Kelly sizing; ``stop``
        overrides the configured initial stop (it must be on the protective side of ``price``).
        ``marks`` prices the other open positions for the gross-exposure cap (entry prices
        otherwise). ``replacing``: the caller closes this symbol's open position in the same
        order (a reversal, or a resize to a new total); that position is then ignored by the
        limits and caps. ``notional_fraction`` (a policy's target, unsigned fraction of equity)
        replaces the configured sizing method: the entry asks for that notional, and the caps,
        drawdown scaling, limits and stops apply as to any entry. ``other_notional`` (absolute
        notional of the other symbols as the caller intends them: a portfolio decides every coin
        at once, so the other coins' working orders count, not only their fills) replaces the
        open positions' sum in the gross-exposure cap.
        """
        if side not in (1, -1):
            raise ValueError(f"side must be 1 (long) or -1 (short), got {side!r}")
        if not price > 0 or math.isinf(price):
            raise ValueError(f"price for {symbol} must be a positive number, got {price}")
        day, bar = timestamp // NS_PER_DAY, timestamp // self.bar_ns
        block = limits.entry_block(self._limits, state, symbol, day, bar, replacing)
        if block is not None:
            return Decision(_REJECT, block, symbol, side)
        if math.isnan(stop):
            stop = exits.initial_stop(self._exits, side, price, atr)
            if self._has_initial_stop and math.isnan(stop):
                return Decision(Action.REJECT, Reason.REJECT_MISSING_VOLATILITY, symbol, side,
                                detail="initial stop needs a positive ATR")
        else:
            exits.check_stop_side(side, price, stop)
        risk = abs(price - stop)  # NaN without a stop
        target = exits.take_profit(self._exits, side, price, risk)
        if math.isnan(payoff_ratio) and not math.isnan(target) and risk > 0:
            payoff_ratio = abs(target - price) / risk
        if notional_fraction == notional_fraction:  # given (not NaN): the caller sized it
            if not notional_fraction > 0 or math.isinf(notional_fraction):
                raise ValueError(f"notional_fraction must be a positive number, got "
                                 f"{notional_fraction}")
            qty = sizing.fixed_notional_qty(equity, price, notional_fraction)
            reject, notes = None, ()
        else:
            qty, reject, notes = sizing.size_position(
                self._sizing, self.bars_per_year, equity, price, risk, volatility, probability,
                payoff_ratio,
            )
        if reject is not None:
            return Decision(Action.REJECT, reject, symbol, side)
        if self._dd_scaling and equity < state.peak_equity:  # (no drawdown: scale 1)
            scale = limits.drawdown_scale(
                self._limits, limits.drawdown(max(state.peak_equity, equity), equity)
            )
            if scale < 1.0:
                qty *= scale
                notes = (*notes, Reason.DRAWDOWN_SCALED)
        other = 0.0
        if other_notional == other_notional:  # given (not NaN)
            other = other_notional
        else:
            for sym, pos in state.positions.items():
                if replacing and sym == symbol:
                    continue
                mark = marks.get(sym, pos.entry_price) if marks is not None else pos.entry_price
                other += pos.qty * mark
        qty, reject, cap_notes = sizing.cap_position(self._sizing, equity, price, qty, other)
        if reject is not None:
            return Decision(Action.REJECT, reject, symbol, side)
        if not qty > _QTY_EPS:
            return Decision(Action.REJECT, Reason.REJECT_ZERO_SIZE, symbol, side)
        return Decision(_ENTER, _SIGNAL_ENTRY, symbol, side, qty, stop, target,
                        (*notes, *cap_notes))

    @staticmethod
    def exit_decision(symbol: str, reason: Reason = Reason.SIGNAL_EXIT) -> Decision:
        """The decision to close ``symbol`` (exits are never refused)."""
        return Decision(Action.EXIT, reason, symbol)

    def check_exit(
        self, position: PositionRisk, open_: float, high: float, low: float
    ) -> tuple[float, Reason, bool] | None:
        """Whether this bar hits the position's resting stop or target: ``(price, reason,
        is_target)``; stop first when both are touched. The live trader places these levels as
        exchange orders instead; simulators call this."""
        hit = exits.intrabar_exit(position.side, position.stop, position.target, open_, high, low)
        if hit is None:
            return None
        price, is_target = hit
        return price, (_TAKE_PROFIT if is_target else position.stop_reason), is_target

    # the signature of ``hold.hold`` after its first two arguments: a deliberate mirror (this
    # method forwards to the pure function with the engine's rules and bar length)
    def hold(
        self,
        state: RiskState,
        symbol: str,
        bars: HoldBars,
        start: int,
        end: int,
        cash: float,
        units: float,
        paid: float = 0.0,
    ) -> tuple[RiskState, int, float]:
        """Simulators' fast path: advance an account holding one position, in ``symbol``, through
        bars ``start, start + 1, ...`` (before ``end``) for as long as nothing happens.

        The account is ``cash`` plus ``units`` (signed) of the symbol and has paid ``paid``
        funding so far; at each close it pays ``units x close x funding`` and is worth
        ``cash - paid + units x close``. Equivalent to calling :meth:`check_exit` and then
        :meth:`on_bar_close` with that equity on every bar, up to the first bar where one of
        them would act (a stop or target touched, a halt, a forced or time-stop exit), which is
        left for the caller to run through those calls. Returns ``(state, bar, paid)``: the
        state after the last bar advanced (``state`` itself if none), the first bar not
        advanced (``end`` if all were) and the funding paid by then. Returns at once when the
        state holds no or several positions, or a kill switch / halt forces exits. The live
        trader never needs this: it calls the engine every bar.
        """
        return hold_position(self._hold_rules, self.bar_ns, state, symbol, bars, start, end,
                             cash, units, paid)

    # ---------------------------------------------------------------- events
    def on_fill(self, state: RiskState, symbol: str, side: int, qty: float, price: float,
                fee: float, timestamp: int, atr: float = NAN, stop: float = NAN,
                ) -> tuple[RiskState, float]:
        """Book a fill of ``qty`` (> 0) units bought (``side`` +1) or sold (-1) at ``price``.

        Opens, adds to, reduces, closes or reverses the symbol's position. ``atr`` (known when
        the order was decided) or an explicit ``stop`` sets the initial stop of a new position.
        Returns the new state and the net PnL realized by this fill (0 for an opening fill).
        A closed losing trade starts the cooldown.
        """
        if not qty > 0:
            raise ValueError(f"fill qty must be > 0, got {qty}")
        day, bar = timestamp // NS_PER_DAY, timestamp // self.bar_ns
        positions = dict(state.positions)
        if day == state.day:  # limits.trades_on / limits.day_start_equity, inlined
            trades_today, start_equity = state.trades_today, state.day_start_equity
        else:
            trades_today, start_equity = 0, state.last_equity
        cooldown = state.cooldown_until_bar
        realized = 0.0
        pos = positions.get(symbol)
        if pos is not None and pos.side != side:  # reduce / close / reverse
            closed = min(qty, pos.qty)
            share = closed / qty
            entry_fees = pos.fees * closed / pos.qty
            realized = pos.side * (price - pos.entry_price) * closed - fee * share - entry_fees
            left = pos.qty - closed
            total = pos.realized + realized
            if left <= _QTY_EPS * max(1.0, pos.qty):
                del positions[symbol]
                if total < 0:
                    cooldown = max(cooldown, bar + self._limits.cooldown_bars_after_loss)
            else:
                positions[symbol] = _evolve_pos(pos, qty=left, fees=pos.fees - entry_fees,
                                                realized=total)
            qty, fee = qty - closed, fee * (1.0 - share)
            pos = None
        if qty > _QTY_EPS:
            if pos is None:  # open
                trades_today += 1
                positions[symbol] = self._open(symbol, side, qty, price, fee, bar, atr, stop)
            else:  # add (e.g. the rest of a partially filled entry)
                new_qty = pos.qty + qty
                entry = (pos.entry_price * pos.qty + price * qty) / new_qty
                update = {"qty": new_qty, "entry_price": entry, "fees": pos.fees + fee}
                if pos.stop_reason == _STOP_LOSS and not pos.breakeven_done:
                    fresh = self._open(symbol, side, new_qty, entry, 0.0, pos.entry_bar, atr, stop)
                    if not math.isnan(fresh.stop):
                        update.update(stop=fresh.stop, initial_risk=fresh.initial_risk,
                                      target=fresh.target)
                positions[symbol] = _evolve_pos(pos, **update)
        new = RiskState(state.peak_equity, state.last_equity, day, start_equity, trades_today,
                        state.halted_until_day, state.drawdown_halted, state.kill_switch,
                        state.kill_reason, cooldown, positions)
        return new, realized

    def _open(self, symbol: str, side: int, qty: float, price: float, fee: float, bar: int,
              atr: float, stop: float) -> PositionRisk:
        ex = self._exits
        if math.isnan(stop):
            stop = exits.initial_stop(ex, side, price, atr)
        else:
            exits.check_stop_side(side, price, stop)
        risk = abs(price - stop)
        target = exits.take_profit(ex, side, price, risk)
        return PositionRisk(symbol, side, qty, price, bar, risk, stop, _STOP_LOSS, target,
                            price, False, fee, 0.0)

    def on_bar_close(
        self, state: RiskState, timestamp: int, equity: float, bars: Mapping[str, BarMarks]
    ) -> tuple[RiskState, tuple[Decision, ...]]:
        """End-of-bar risk pass with marked-to-market ``equity`` and each open symbol's
        ``(high, low, close, atr)`` (positions without marks keep their levels).

        Checks kill switch, max drawdown and daily loss (HALT decisions at the breach, EXIT
        decisions for every open position while halted if ``close_on_halt``); ratchets
        trailing / chandelier / break-even stops; emits TIME_STOP exits.
        """
        day = timestamp // NS_PER_DAY
        if day != state.day:
            start_equity, trades_today = state.last_equity, 0
        else:
            start_equity, trades_today = state.day_start_equity, state.trades_today
        peak = state.peak_equity if state.peak_equity >= equity else equity
        dd_halted, halted_until = state.drawdown_halted, state.halted_until_day
        decisions: list[Decision] | None = None
        max_dd, max_daily = self._max_dd, self._max_daily
        if max_dd is not None and not dd_halted and equity <= peak * (1.0 - max_dd):
            dd_halted = True
            decisions = [Decision(Action.HALT, Reason.HALT_MAX_DRAWDOWN, "*",
                                  detail=f"equity {equity:.2f} vs peak {peak:.2f}")]
        if (max_daily is not None and halted_until < day
                and equity <= start_equity * (1.0 - max_daily)):
            halted_until = day
            decisions = decisions or []
            decisions.append(Decision(Action.HALT, Reason.HALT_DAILY_LOSS, "*",
                                      detail=f"equity {equity:.2f} vs day start "
                                             f"{start_equity:.2f}"))
        positions = state.positions
        if positions:
            forced: Reason | None = None
            if state.kill_switch:
                forced = Reason.KILL_SWITCH
            elif self._close_on_halt and dd_halted:
                forced = Reason.HALT_MAX_DRAWDOWN
            elif self._close_on_halt and halted_until >= day:
                forced = Reason.HALT_DAILY_LOSS
            positions = dict(positions)
            ex = self._exits
            trail = exits.trail
            for sym, pos in state.positions.items():
                marks = bars.get(sym)
                if marks is not None:
                    high, low, _close, atr = marks
                    stop, reason, extreme, be_done = trail(
                        ex, pos.side, pos.entry_price, pos.initial_risk, pos.stop,
                        pos.stop_reason, pos.extreme, pos.breakeven_done, high, low, atr)
                    if (extreme != pos.extreme or be_done != pos.breakeven_done
                            or reason is not pos.stop_reason or stop > pos.stop
                            or stop < pos.stop):
                        positions[sym] = PositionRisk(
                            sym, pos.side, pos.qty, pos.entry_price, pos.entry_bar,
                            pos.initial_risk, stop, reason, pos.target, extreme, be_done,
                            pos.fees, pos.realized)
                if forced is not None:
                    decisions = decisions or []
                    decisions.append(Decision(Action.EXIT, forced, sym))
                elif (self._time_stop is not None
                      and timestamp // self.bar_ns - pos.entry_bar >= self._time_stop):
                    decisions = decisions or []
                    decisions.append(Decision(Action.EXIT, Reason.TIME_STOP, sym))
        new = RiskState(peak, equity, day, start_equity, trades_today, halted_until, dd_halted,
                        state.kill_switch, state.kill_reason, state.cooldown_until_bar, positions)
        return new, (tuple(decisions) if decisions else _NO_DECISIONS)


class _PlainView:
    """The fields of a pydantic model as plain instance attributes (read-only by convention)."""

    def __init__(self, model: BaseModel) -> None:
        self.__dict__.update({name: getattr(model, name) for name in type(model).model_fields})


def _plain_view(model: M) -> M:
    """A fast-to-read snapshot of a frozen config model, for the pure rule functions (they
    read fields only, no properties or methods)."""
    return cast(M, _PlainView(model))


def _evolve(state: RiskState, **changes: object) -> RiskState:
    s = state
    new = RiskState(s.peak_equity, s.last_equity, s.day, s.day_start_equity, s.trades_today,
                    s.halted_until_day, s.drawdown_halted, s.kill_switch, s.kill_reason,
                    s.cooldown_until_bar, s.positions)
    for name, value in changes.items():
        setattr(new, name, value)
    return new


def _evolve_pos(pos: PositionRisk, **changes: object) -> PositionRisk:
    values = {name: getattr(pos, name) for name in PositionRisk.__slots__}
    values.update(changes)
    return PositionRisk(**values)  # type: ignore[arg-type]
