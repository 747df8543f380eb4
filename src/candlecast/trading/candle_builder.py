"""Closed candles from a stream's messages: pure, values in and values out.

Two builders, one per kind of stream, with the same contract:

* :class:`OhlcvCandleBuilder` takes candle *snapshots* (``watch_ohlcv``: the forming candle's
  open, high, low, last price and volume so far, sent again on every change);
* :class:`TradeCandleBuilder` aggregates public *trades* (``watch_trades``) into candles, for
  exchanges that stream no candles.

A candle is handed on (``BuildResult.closed``) once it is closed: when the stream moves to a later
open time (``how="next_open"``), or ``grace`` after its close time (``close_due``,
``how="grace"``). Only a *complete* candle is handed on: everything that happened in it was seen
on one unbroken connection (``epoch``: the feed counts reconnections). A candle that may have
missed messages is dropped with an ``incomplete`` note; the feed then takes it from the
exchange's REST API like any candle the stream never delivered.

Faults a real stream has, each turned into a :class:`StreamNote` (the feed logs, journals and
counts them) and handled:

* ``duplicate``: a snapshot equal to the known one, or a trade id seen before (dropped);
* ``out_of_order``: an older snapshot arriving after a newer one (volume lower, range narrower:
  ignored), or a message for a candle before the one forming that was never seen (left to the
  REST backfill);
* ``revised``: a candle already handed on that changes afterwards (a late trade, the exchange
  correcting it): ``BuildResult.revised`` carries the new values for the candle store; the
  trader traded the earlier version, which its journal keeps;
* ``late``: a message for a candle handed on too long ago to be remembered (ignored);
* ``malformed``: a snapshot or trade that fails the per-row candle rules
  (:func:`~candlecast.trading.candles.check_bar`: positive finite prices, low <= open, close
  <= high, volume >= 0, open time on the grid) or has no usable price/amount (dropped; a later
  snapshot supersedes a bad one, but a candle that lost a trade is incomplete);
* ``incomplete``: see above.

Volumes of trade candles are summed exactly (Shewchuk's partials, as ``math.fsum``), so the
result does not depend on the order trades arrive in.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from candlecast.exchange.source import Candle
from candlecast.trading.candles import Bar, check_bar

#: candles handed on per symbol that are remembered (to recognise revisions and duplicates)
KEEP_DELIVERED = 16


@dataclass(frozen=True)
class StreamNote:
    """One thing the builder saw: ``kind`` (see the module docstring), the symbol, a one-line
    ``message`` with the reason, and the candle's open time (ns) when known."""

    kind: str
    symbol: str
    message: str
    ts: int | None = None


@dataclass(frozen=True)
class Closed:
    """A closed, complete candle of ``symbol``; ``how``: ``next_open`` or ``grace``."""

    symbol: str
    bar: Bar
    how: str


@dataclass
class BuildResult:
    closed: list[Closed] = field(default_factory=list)
    revised: list[Closed] = field(default_factory=list)
    notes: list[StreamNote] = field(default_factory=list)

    def extend(self, other: BuildResult) -> BuildResult:
        self.closed += other.closed
        self.revised += other.revised
        self.notes += other.notes
        return self


def _when(ts: int) -> str:
    return pd.Timestamp(ts, tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


def _dominates(a: Bar, b: Bar) -> bool:
    """``a`` is a later snapshot of the same candle than ``b`` (or equal): volume and range can
    only grow while a candle forms."""
    return a.volume >= b.volume and a.high >= b.high and a.low <= b.low


class _Symbol:
    """Per-symbol memory shared by both builders: candles handed on (or given up) so far."""

    def __init__(self) -> None:
        self.closed_upto: int | None = None  # open time of the last candle closed or given up
        self.delivered: OrderedDict[int, Bar] = OrderedDict()

    def deliver(self, bar: Bar) -> None:
        self.delivered[bar.ts] = bar
        self.delivered.move_to_end(bar.ts)
        while len(self.delivered) > KEEP_DELIVERED:
            self.delivered.popitem(last=False)
        self.give_up(bar.ts)

    def give_up(self, ts: int) -> None:
        self.closed_upto = ts if self.closed_upto is None else max(self.closed_upto, ts)

    def is_closed(self, ts: int) -> bool:
        return self.closed_upto is not None and ts <= self.closed_upto


class _Builder:
    def __init__(self, symbols: Iterable[str], step_ns: int, grace_ns: int) -> None:
        if step_ns <= 0 or grace_ns < 0:
            raise ValueError(f"need step_ns > 0 and grace_ns >= 0, got {step_ns}, {grace_ns}")
        self.step_ns, self.grace_ns = step_ns, grace_ns
        self._sym = {s: self._state() for s in symbols}

    def _state(self) -> _Symbol:
        return _Symbol()

    def mark_delivered(self, symbol: str, bar: Bar) -> None:
        """The feed handed ``bar`` on from elsewhere (the REST backfill): the stream's later
        messages for it are revisions or duplicates, and an older forming candle is dropped."""
        state = self._sym[symbol]
        state.deliver(bar)
        self._drop_forming_upto(state, bar.ts)

    def _drop_forming_upto(self, state: _Symbol, ts: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def due(self, ts: int, now_ns: int) -> bool:
        return ts + self.step_ns + self.grace_ns <= now_ns

    def last_closed(self, symbol: str) -> int | None:
        return self._sym[symbol].closed_upto


# ------------------------------------------------------------------------------ candle streams
class _OhlcvSymbol(_Symbol):
    def __init__(self) -> None:
        super().__init__()
        self.forming: Bar | None = None
        self.epoch = -1  # connection epoch of the forming candle's latest snapshot


class OhlcvCandleBuilder(_Builder):
    """Closed candles from candle snapshots (see the module docstring)."""

    _sym: dict[str, _OhlcvSymbol]  # type: ignore[assignment]

    def _state(self) -> _OhlcvSymbol:
        return _OhlcvSymbol()

    def forming(self, symbol: str) -> Bar | None:
        return self._sym[symbol].forming

    def on_candles(self, symbol: str, rows: Iterable[Candle], epoch: int) -> BuildResult:
        """Snapshots ``(open_ms, o, h, l, c, v)`` of ``symbol`` received on connection
        ``epoch``, in arrival order."""
        out = BuildResult()
        state = self._sym[symbol]
        for ms, *values in rows:
            bar = Bar(int(ms) * 1_000_000, *values)
            verdict = check_bar(bar, None, self.step_ns)
            if not verdict.ok:
                out.notes.append(StreamNote("malformed", symbol, f"{verdict.rule}: "
                                            f"{verdict.reason}", bar.ts))
                continue
            self._one(state, symbol, bar, epoch, out)
        return out

    def _one(self, state: _OhlcvSymbol, symbol: str, bar: Bar, epoch: int,
             out: BuildResult) -> None:
        ts, forming = bar.ts, state.forming
        if state.is_closed(ts):
            known = state.delivered.get(ts)
            if known is None:
                out.notes.append(StreamNote("late", symbol, f"snapshot of {_when(ts)} after it "
                                            "was closed; ignored", ts))
            elif known == bar:
                out.notes.append(StreamNote("duplicate", symbol,
                                            f"{_when(ts)} again, unchanged", ts))
            elif _dominates(known, bar):
                out.notes.append(StreamNote("out_of_order", symbol, f"an older snapshot of "
                                            f"{_when(ts)} after its close; ignored", ts))
            else:
                state.deliver(bar)
                out.revised.append(Closed(symbol, bar, "revised"))
                out.notes.append(StreamNote("revised", symbol, f"{_when(ts)} changed after it "
                                            f"was handed on: {_diff(known, bar)} (traded on the "
                                            "earlier values)", ts))
            return
        if forming is None or ts > forming.ts:
            if forming is not None:
                self._close(state, symbol, "next_open", epoch, out)
            state.forming, state.epoch = bar, epoch
        elif ts == forming.ts:
            if bar == forming:
                out.notes.append(StreamNote("duplicate", symbol, f"{_when(ts)} snapshot "
                                            "repeated", ts))
            elif _dominates(bar, forming):
                state.forming, state.epoch = bar, epoch
            else:
                out.notes.append(StreamNote("out_of_order", symbol, f"an older snapshot of "
                                            f"{_when(ts)} after a newer one; ignored", ts))
        else:
            out.notes.append(StreamNote("out_of_order", symbol, f"{_when(ts)} arrived after "
                                        f"{_when(forming.ts)} had begun; left to the backfill",
                                        ts))

    def _close(self, state: _OhlcvSymbol, symbol: str, how: str, epoch: int,
               out: BuildResult) -> None:
        bar = state.forming
        assert bar is not None
        state.forming = None
        if state.epoch == epoch:
            state.deliver(bar)
            out.closed.append(Closed(symbol, bar, how))
        else:
            state.give_up(bar.ts)
            out.notes.append(StreamNote("incomplete", symbol, f"{_when(bar.ts)}: the connection "
                                        "dropped after its last snapshot; taken from REST", bar.ts))

    def close_due(self, symbol: str, now_ns: int, epoch: int, healthy: bool) -> BuildResult:
        """Close ``symbol``'s forming candle if it is ``grace`` past its close: handed on when it
        was seen to its end on connection ``epoch`` and the stream is ``healthy``, else given
        up (``incomplete``)."""
        out = BuildResult()
        state = self._sym[symbol]
        if state.forming is not None and self.due(state.forming.ts, now_ns):
            if not healthy:
                state.epoch = -1
            self._close(state, symbol, "grace", epoch, out)
        return out

    def _drop_forming_upto(self, state: _Symbol, ts: int) -> None:
        assert isinstance(state, _OhlcvSymbol)
        if state.forming is not None and state.forming.ts <= ts:
            state.forming = None


# ------------------------------------------------------------------------------ trade streams
class _ExactSum:
    """An exactly rounded running sum (Shewchuk's partials, the algorithm behind math.fsum)."""

    __slots__ = ("partials",)

    def __init__(self) -> None:
        self.partials: list[float] = []

    def add(self, x: float) -> None:
        i = 0
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                self.partials[i] = lo
                i += 1
            x = hi
        self.partials[i:] = [x]

    def value(self) -> float:
        return math.fsum(self.partials)


class _TradeCandle:
    """Aggregate of the trades of one candle: first and last by (time, id), extremes, volume."""

    __slots__ = ("ts", "first", "last", "high", "low", "volume", "ids", "complete", "epoch")

    def __init__(self, ts: int, epoch: int, complete: bool) -> None:
        self.ts, self.epoch, self.complete = ts, epoch, complete
        self.first: tuple[tuple[int, int, str], float] | None = None
        self.last: tuple[tuple[int, int, str], float] | None = None
        self.high, self.low = -math.inf, math.inf
        self.volume = _ExactSum()
        self.ids: set[str] = set()

    def add(self, key: tuple[int, int, str], price: float, amount: float) -> None:
        if self.first is None or key < self.first[0]:
            self.first = (key, price)
        if self.last is None or key > self.last[0]:
            self.last = (key, price)
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.volume.add(amount)

    def bar(self) -> Bar:
        assert self.first is not None and self.last is not None
        return Bar(self.ts, self.first[1], self.high, self.low, self.last[1], self.volume.value())


class _TradeSymbol(_Symbol):
    def __init__(self) -> None:
        super().__init__()
        self.forming: _TradeCandle | None = None
        self.recent: OrderedDict[int, _TradeCandle] = OrderedDict()  # handed-on stream candles
        self.epoch = -1
        self.epoch_since = 0  # ns: first trades received on the current connection
        self.arrivals = 0
        self.lossy: set[int] = set()  # candles with a trade that could not be used


def _trade_key(ms: int, trade_id: str, arrival: int) -> tuple[int, int, str]:
    """Order of trades within a millisecond: numeric ids (most exchanges) order them, else
    arrival."""
    return (ms, int(trade_id) if trade_id.isdigit() else arrival, trade_id)


class TradeCandleBuilder(_Builder):
    """Closed candles from public trades (see the module docstring). A candle is complete only
    when its first trade came on a connection that was already receiving before the candle
    opened, and the connection did not drop before it closed."""

    _sym: dict[str, _TradeSymbol]  # type: ignore[assignment]

    def _state(self) -> _TradeSymbol:
        return _TradeSymbol()

    def forming(self, symbol: str) -> Bar | None:
        state = self._sym[symbol]
        if state.forming is None:
            return None
        if state.forming.first is None:  # every trade so far was a duplicate or malformed
            return Bar(state.forming.ts, math.nan, math.nan, math.nan, math.nan, 0.0)
        return state.forming.bar()

    def on_trades(self, symbol: str, trades: Iterable[tuple[int, str, float, float]],
                  epoch: int, now_ns: int) -> BuildResult:
        """Trades ``(time_ms, id, price, amount)`` of ``symbol`` received at ``now_ns`` on
        connection ``epoch``, in arrival order."""
        out = BuildResult()
        state = self._sym[symbol]
        if epoch != state.epoch:
            state.epoch, state.epoch_since = epoch, now_ns
            if state.forming is not None:
                state.forming.complete = False  # trades during the reconnection are missing
        for ms, trade_id, price, amount in trades:
            state.arrivals += 1
            ts = (int(ms) * 1_000_000 // self.step_ns) * self.step_ns
            if not (math.isfinite(price) and price > 0 and math.isfinite(amount)
                    and amount >= 0):
                out.notes.append(StreamNote("malformed", symbol, f"trade {trade_id or '?'} at "
                                            f"{_when(ts)}: price {price}, amount {amount}; the "
                                            "candle is taken from REST", ts))
                if state.forming is not None and state.forming.ts == ts:
                    state.forming.complete = False
                elif not state.is_closed(ts):
                    state.lossy.add(ts)  # a trade of a candle not begun: it lacks one
                continue
            key = _trade_key(int(ms), trade_id, state.arrivals)
            self._one(state, symbol, ts, key, price, amount, epoch, out)
        return out

    def _one(self, state: _TradeSymbol, symbol: str, ts: int, key: tuple[int, int, str],
             price: float, amount: float, epoch: int, out: BuildResult) -> None:
        ident = key[2] or f"{key[0]}:{price}:{amount}"
        if state.is_closed(ts):
            candle = state.recent.get(ts)
            if candle is None:
                out.notes.append(StreamNote("late", symbol, f"trade {key[2]} of {_when(ts)} "
                                            "after the candle was closed; ignored", ts))
            elif ident in candle.ids:
                out.notes.append(StreamNote("duplicate", symbol, f"trade {key[2]} again", ts))
            else:
                before = candle.bar()
                candle.ids.add(ident)
                candle.add(key, price, amount)
                after = candle.bar()
                state.deliver(after)
                out.revised.append(Closed(symbol, after, "revised"))
                out.notes.append(StreamNote("revised", symbol, f"{_when(ts)}: a trade after it "
                                            f"was handed on: {_diff(before, after)} (traded on "
                                            "the earlier values)", ts))
            return
        forming = state.forming
        if forming is not None and ts < forming.ts:
            out.notes.append(StreamNote("out_of_order", symbol, f"trade {key[2]} of {_when(ts)} "
                                        f"after {_when(forming.ts)} had begun; left to the "
                                        "backfill", ts))
            return
        if forming is None or ts > forming.ts:
            if forming is not None:
                self._close(state, symbol, "next_open", out)
            complete = state.epoch_since <= ts and ts not in state.lossy
            state.lossy = {t for t in state.lossy if t > ts}
            forming = state.forming = _TradeCandle(ts, epoch, complete)
        if ident in forming.ids:
            out.notes.append(StreamNote("duplicate", symbol, f"trade {key[2]} again", ts))
            return
        if forming.epoch != epoch:
            forming.complete = False
        forming.ids.add(ident)
        forming.add(key, price, amount)

    def _close(self, state: _TradeSymbol, symbol: str, how: str, out: BuildResult) -> None:
        candle = state.forming
        assert candle is not None
        state.forming = None
        if candle.complete and candle.epoch == state.epoch:
            bar = candle.bar()
            state.deliver(bar)
            state.recent[candle.ts] = candle
            while len(state.recent) > KEEP_DELIVERED:
                state.recent.popitem(last=False)
            out.closed.append(Closed(symbol, bar, how))
        else:
            state.give_up(candle.ts)
            out.notes.append(StreamNote("incomplete", symbol, f"{_when(candle.ts)}: not all of "
                                        "its trades were seen on one connection; taken from "
                                        "REST", candle.ts))

    def close_due(self, symbol: str, now_ns: int, epoch: int, healthy: bool) -> BuildResult:
        """As :meth:`OhlcvCandleBuilder.close_due`."""
        out = BuildResult()
        state = self._sym[symbol]
        candle = state.forming
        if candle is not None and self.due(candle.ts, now_ns):
            if not healthy or epoch != state.epoch:
                candle.complete = False
            self._close(state, symbol, "grace", out)
        return out

    def _drop_forming_upto(self, state: _Symbol, ts: int) -> None:
        assert isinstance(state, _TradeSymbol)
        if state.forming is not None and state.forming.ts <= ts:
            state.forming = None


def _diff(a: Bar, b: Bar) -> str:
    names = ("open", "high", "low", "close", "volume")
    parts = [f"{n} {x:.10g} -> {y:.10g}" for n, x, y in zip(names, a[1:], b[1:], strict=True)
             if x != y]
    return ", ".join(parts) or "no change"
