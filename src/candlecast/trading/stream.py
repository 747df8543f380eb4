"""The streaming feed: closed candles from the exchange's WebSocket, behind the trader's
:class:`~candlecast.trading.feeds.CandleFeed` protocol (``trade.feed: stream``).

Three threads meet here:

* the stream worker (:mod:`candlecast.trading.stream_worker`, asyncio + ccxt.pro) turns what the
  exchange sends into closed candles with a candle builder
  (:mod:`candlecast.trading.candle_builder`) and keeps the connection alive;
* the trader's thread calls :meth:`StreamFeed.next_tick`, which hands on the candles of one open
  time for all symbols, fetching over REST (:func:`candlecast.data.ingest.download_candles`,
  the ingest's own paging and retries) every candle that is due (``close_grace_s`` past its close)
  and that the stream did not deliver complete: missed while disconnected, dropped as incomplete,
  never streamed. A hole the exchange itself has (its REST API shows a later candle but not this
  one) becomes a gap, as in the stored data;
* the candle appender (:mod:`candlecast.trading.candle_appender`) writes the candles handed on
  (and later revisions) to the candle store.

:class:`~candlecast.trading.stream_hub.StreamHub` is the state they share, under one lock. A
tick handed on while the stream has been silent for more than ``silence_s`` carries ``stale``:
the trader then decides nothing (working orders, stops and limits still act). Every event
(connected, disconnected, reconnect, silent, recovered, duplicate, out-of-order, revised, late,
malformed, incomplete, backfill, gap, ...) is logged and journalled by the trader with its
reason and counted (:meth:`StreamFeed.stats`, Prometheus).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from candlecast.data.ingest import download_candles
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.exchange.errors import ExchangeRequestError
from candlecast.exchange.retry import BackoffPolicy, Retrier
from candlecast.exchange.source import OhlcvSource
from candlecast.trading.candle_appender import CandleAppender
from candlecast.trading.candles import Bar
from candlecast.trading.config import StreamConfig
from candlecast.trading.feeds import IDLE, Tick
from candlecast.trading.stream_hub import StreamHub
from candlecast.trading.stream_worker import StreamWorker

log = logging.getLogger(__name__)
EventSink = Callable[..., None]


@dataclass(frozen=True)
class FeedHealth:
    """The stream now: ``stale`` is the reason the data is stale ("" when fresh)."""

    stale: str
    kind: str | None
    connected: int  # subscription groups connected
    groups: int
    last_message_age_s: float
    fatal: str = ""


class StreamFeed:
    """Closed candles from a WebSocket stream; see the module docstring.

    ``rest`` serves the priming history and the backfill (a
    :class:`~candlecast.exchange.CcxtOhlcvSource`); ``connect`` builds the stream source on the
    worker's event loop (a :class:`~candlecast.exchange.ccxt_stream.CcxtStreamSource`);
    ``store``: where the candles handed on are appended (``None``: nowhere). ``clock`` is the
    exchange's time in seconds (``time.time``; tests pass the fake exchange's clock).
    """

    def __init__(
        self,
        rest: OhlcvSource,
        series: list[SeriesId],
        config: StreamConfig,
        *,
        connect: Callable[[], Any],
        store: CandleStore | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.rest, self.config, self.clock = rest, config, clock
        self.series = {s.symbol: s for s in series}
        self.timeframe = series[0].timeframe
        self.step_ns = int(series[0].step.value)
        self.hub = StreamHub(list(self.series), self.timeframe, self.step_ns, config, clock)
        self.rng = rng or random.Random()
        self.worker = StreamWorker(connect, self.hub, self.rng)
        self.policy = BackoffPolicy(config.backfill_retries, config.backfill_backoff_s,
                                    config.backfill_backoff_max_s)
        self.retrier = Retrier(self.policy, sleep=sleep, rng=self.rng)
        self.on_event: EventSink = on_event or (lambda kind, message, ts=None: None)
        self.appender = (CandleAppender(store, self.series, flush_s=config.store_flush_s,
                                        on_event=self.hub.event) if store is not None else None)
        self._holes: dict[str, set[int]] = {s: set() for s in self.series}
        self._next_backfill: dict[str, float] = {}
        self._backfill_attempts: Counter[str] = Counter()
        self._started = False

    def __repr__(self) -> str:
        return f"StreamFeed({self.rest!r}, {sorted(self.series)})"

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, wait_s: float = 30.0) -> None:
        """Start the worker (and the appender); wait up to ``wait_s`` for the subscription to be
        set up. Raises ``RuntimeError`` when the stream cannot work (unknown symbol, no stream
        of that kind)."""
        if self._started:
            return
        self._started = True
        if self.appender is not None:
            self.appender.start()
        self.worker.start()
        self.hub.setup_done.wait(wait_s)
        if self.hub.fatal:
            raise RuntimeError(f"stream feed: {self.hub.fatal}")

    def close(self) -> None:
        """Stop the worker, write what is left to the candle store, report the last events."""
        self.worker.stop()
        if self.appender is not None:
            self.appender.close()
        self._deliver_events()

    def health(self) -> FeedHealth:
        now = self.clock()
        with self.hub.lock:
            return FeedHealth(self.hub.stale_reason(now), self.hub.kind,
                              len(self.hub.connected), len(self.hub.epochs),
                              now - self.hub.last_message_at, self.hub.fatal)

    def stats(self) -> dict[str, int]:
        """Counts since start: every event kind, ``messages`` (wake-ups with data), ``rows``
        (snapshots or trades read), ``reconnects``, ``candles_stream`` and ``candles_rest``
        (candles handed on, by where they came from)."""
        with self.hub.lock:
            return dict(self.hub.stats)

    # ---- CandleFeed ------------------------------------------------------------------------
    def history(self, symbol: str, n: int, before: int | None) -> list[Bar]:
        """The last ``n`` closed candles before ``before`` (default: the forming one), over
        REST; a window with holes is widened until it holds ``n`` (or the exchange has no more),
        so the feature engine is primed with the same rows as from the stored table."""
        if n <= 0:
            return []
        stop = (self._now_ns() // self.step_ns) * self.step_ns if before is None else before
        span, rows = n, []
        for _ in range(4):
            rows = self._download(symbol, stop - span * self.step_ns, stop)
            if len(rows) >= n or len(rows) < span // 2:
                break
            span += 2 * (n - len(rows))
        return rows[-n:]

    def next_tick(self, after: Mapping[str, int | None], wait_s: float) -> Tick | str:
        self.start()
        deadline = time.monotonic() + wait_s
        while True:
            if self.hub.fatal:
                self._deliver_events()
                raise RuntimeError(f"stream feed: {self.hub.fatal}")
            tick = self._ready_tick(after)
            self._deliver_events()
            if tick is not None:
                return tick
            left = deadline - time.monotonic()
            if left <= 0:
                return IDLE
            with self.hub.cond:
                if not self.hub.events:
                    self.hub.cond.wait(min(left, self.config.watchdog_interval_s))

    # ---- internals ---------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return int(self.clock() * 1e9)

    def _download(self, symbol: str, start_ns: int, stop_ns: int) -> list[Bar]:
        rows = download_candles(self.rest, self.series[symbol], start_ns // 1_000_000,
                                stop_ns // 1_000_000, self.retrier)
        return [Bar(int(ms) * 1_000_000, o, h, lo, c, v) for ms, o, h, lo, c, v in rows]

    def _next_needed(self, symbol: str, last: int | None, now_ns: int) -> int:
        t = (last + self.step_ns) if last is not None else \
            (now_ns // self.step_ns - 1) * self.step_ns
        holes = self._holes[symbol]
        while t in holes:
            t += self.step_ns
        return t

    def _due(self, ts: int, now_ns: int) -> bool:
        """``ts`` is past the stream's chance to close it (grace and one watchdog round)."""
        cfg = self.config
        wait_ns = int((cfg.close_grace_s + cfg.watchdog_interval_s * self._speed()) * 1e9)
        return ts + self.step_ns + wait_ns <= now_ns

    def _speed(self) -> float:
        """Exchange seconds per wall second (1 in production; a fake clock's speed in tests)."""
        return float(getattr(self.clock, "speed", 1.0))

    def _ready_tick(self, after: Mapping[str, int | None]) -> Tick | None:
        now = self.clock()
        now_ns = int(now * 1e9)
        needed = {}
        for symbol in self.series:
            want = self._next_needed(symbol, after.get(symbol), now_ns)
            with self.hub.lock:
                ready = self.hub.ready[symbol]
                for old in [t for t in ready if t < want]:
                    del ready[old]  # already processed (a restart, or delivered twice)
                have = want in ready
            if not have and self._due(want, now_ns):
                self._resolve_missing(symbol, want, now_ns)
                want = self._next_needed(symbol, after.get(symbol), now_ns)
            needed[symbol] = want
        t0 = min(needed.values())
        members = [s for s, t in needed.items() if t == t0]
        with self.hub.lock:
            if not all(t0 in self.hub.ready[s] for s in members):
                self._store_revisions()
                return None
            picked = {s: self.hub.ready[s].pop(t0) for s in members}
            builder = self.hub.builder
            for symbol, (bar, source) in picked.items():
                self.hub.stats[f"candles_{source}"] += 1
                if source == "rest" and builder is not None:
                    builder.mark_delivered(symbol, bar)
            stale = self.hub.stale_reason(now)
            self._store_revisions()
        if self.appender is not None:
            for symbol, (bar, _) in picked.items():
                self.appender.add(symbol, bar)
        return Tick(t0, {s: bar for s, (bar, _) in picked.items()}, stale=stale)

    def _store_revisions(self) -> None:
        """(Under the lock.) Revised candles go to the candle store; the trader keeps its
        journal of what it traded."""
        revisions, self.hub.revisions = self.hub.revisions, []
        if self.appender is not None:
            for symbol, bar in revisions:
                self.appender.add(symbol, bar)

    def _resolve_missing(self, symbol: str, want: int, now_ns: int) -> None:
        """``want`` is due and the stream has not delivered it: ask the REST API (paced by
        backoff), record the exchange's own holes, give up after ``backfill_give_up_s``."""
        if time.monotonic() < self._next_backfill.get(symbol, 0.0):
            self._maybe_give_up(symbol, want, now_ns)
            return
        try:  # up to now, the forming candle included: it proves the exchange's holes
            rows = self._download(symbol, want, now_ns + 1)
        except ExchangeRequestError as error:
            self._retry_later(symbol)
            self.hub.event("backfill_failed", f"{symbol}: REST backfill from "
                           f"{_when(want)} failed: {error}", want)
            self._maybe_give_up(symbol, want, now_ns)
            return
        closed = [b for b in rows if b.ts + self.step_ns <= now_ns]
        with self.hub.lock:
            ready = self.hub.ready[symbol]
            added = [b for b in closed if b.ts not in ready]  # the stream's own win
            for bar in added:
                ready[bar.ts] = (bar, "rest")
            known = set(ready)
        if added:
            span = _when(added[0].ts) + ("" if len(added) == 1 else f" .. {_when(added[-1].ts)}")
            self.hub.event("backfill", f"{symbol}: {len(added)} candle(s) from REST: {span}", want)
        if rows:  # a candle the REST API skips while it shows a later one: the exchange's hole
            on_rest = {b.ts for b in rows}
            holes = [t for t in range(want, rows[-1].ts, self.step_ns)
                     if t not in on_rest and t not in known]
            if holes:
                self._holes[symbol].update(holes)
                self.hub.event("exchange_gap", f"{symbol}: the exchange has no candle at "
                               f"{', '.join(_when(t) for t in holes[:5])}"
                               f"{' ...' if len(holes) > 5 else ''} (a later one exists)", want)
        if want in known or want in self._holes[symbol]:
            self._backfill_attempts[symbol] = 0
            self._next_backfill.pop(symbol, None)
        else:
            self._retry_later(symbol)
            self._maybe_give_up(symbol, want, now_ns)

    def _retry_later(self, symbol: str) -> None:
        delay = self.policy.delay(self._backfill_attempts[symbol], self.rng)
        self._backfill_attempts[symbol] += 1
        self._next_backfill[symbol] = time.monotonic() + delay

    def _maybe_give_up(self, symbol: str, want: int, now_ns: int) -> None:
        limit = want + self.step_ns + int(self.config.backfill_give_up_s * 1e9)
        if now_ns >= limit:
            self._holes[symbol].add(want)
            self.hub.event("gap_unfilled", f"{symbol}: {_when(want)} neither streamed nor on "
                           f"REST after {self.config.backfill_give_up_s:g} s; traded as a gap",
                           want)

    def _deliver_events(self) -> None:
        """Report the hub's events from the trader's thread (its journal is not thread-safe);
        many of one kind at once become one event with the count."""
        with self.hub.lock:
            events = list(self.hub.events)
            self.hub.events.clear()
        if not events:
            return
        by_kind: dict[str, list[tuple[str, int | None]]] = {}
        for kind, message, ts in events:
            by_kind.setdefault(kind, []).append((message, ts))
        for kind, items in by_kind.items():
            if len(items) <= 3:
                for message, ts in items:
                    self.on_event(kind, message, ts)
            else:
                (first, ts), (last, _) = items[0], items[-1]
                self.on_event(kind, f"{len(items)} times; first: {first}; last: {last}", ts)


def _when(ts: int) -> str:
    return str(pd.Timestamp(ts, tz="UTC"))


def stream_feed(config: Any, root: Any, *, rest: OhlcvSource | None = None,
                clock: Callable[[], float] = time.time) -> StreamFeed:
    """The :class:`StreamFeed` of a :class:`~candlecast.trading.config.TradeConfig`: ccxt REST
    source and ccxt.pro stream source of ``config.exchange``, store under ``root``."""
    from pathlib import Path

    from candlecast.exchange import CcxtOhlcvSource
    from candlecast.exchange.ccxt_stream import CcxtStreamSource

    stream = config.stream
    if rest is None:
        rest = CcxtOhlcvSource.create(
            config.exchange, timeout_ms=config.exchange_timeout_ms,
            rate_limit_ms=config.exchange_rate_limit_ms, api_url=config.exchange_api_url,
            options=config.exchange_options or None)
    connect = functools.partial(
        CcxtStreamSource.create, config.exchange, timeout_ms=config.exchange_timeout_ms,
        api_url=config.exchange_api_url, ws_url=stream.ws_url,
        options=config.exchange_options or None)
    store = None if stream.candle_store is None else CandleStore(Path(root) / stream.candle_store)
    return StreamFeed(rest, config.series, stream, connect=connect, store=store, clock=clock)
