"""The state the streaming feed's threads share (:mod:`candlecast.trading.stream`): the candle
builder, the closed candles waiting to be handed on, the connection epochs and the events, all
under one lock. The stream worker (asyncio) writes what arrives; the trader's thread takes
candles and events out."""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from candlecast.trading.candle_builder import (
    BuildResult,
    OhlcvCandleBuilder,
    StreamNote,
    TradeCandleBuilder,
)
from candlecast.trading.candles import Bar
from candlecast.trading.config import StreamConfig

log = logging.getLogger(__name__)


class StreamHub:
    """State shared by the stream worker and the trader's thread; every access holds ``lock``."""

    def __init__(self, symbols: list[str], timeframe: str, step_ns: int, config: StreamConfig,
                 clock: Callable[[], float]) -> None:
        self.symbols, self.timeframe, self.step_ns = list(symbols), timeframe, step_ns
        self.config, self.clock = config, clock
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.kind: str | None = None
        self.builder: OhlcvCandleBuilder | TradeCandleBuilder | None = None
        self.last_message_at = clock()
        #: per subscription group: latest time (ms) the exchange's data reached (a candle's
        #: open time, a trade's time)
        self.group_data_ms: list[int] = []
        self.epochs: list[int] = []
        self.attempts: list[int] = []
        self.connected: set[int] = set()
        self.group_of: dict[str, int] = {}
        self.ready: dict[str, dict[int, tuple[Bar, str]]] = {s: {} for s in symbols}
        self.revisions: list[tuple[str, Bar]] = []
        self.events: deque[tuple[str, str, int | None]] = deque()
        self.stats: Counter[str] = Counter()
        self.fatal = ""
        self.stale_since: float | None = None
        self.setup_done = threading.Event()

    # ---- called by the worker ------------------------------------------------------------
    def set_kind(self, kind: str, groups: int) -> None:
        grace_ns = int(self.config.close_grace_s * 1e9)
        with self.cond:
            self.kind = kind
            self.last_message_at = self.clock()  # silence is counted from the subscription
            self.builder = (OhlcvCandleBuilder if kind == "ohlcv" else TradeCandleBuilder)(
                self.symbols, self.step_ns, grace_ns)
            self.epochs, self.attempts = [0] * groups, [0] * groups
            self.group_data_ms = [-1] * groups
            self.group_of = {s: (0 if groups == 1 else i) for i, s in enumerate(self.symbols)}
            self._event("stream_subscribing", f"{kind} stream of {len(self.symbols)} symbol(s) "
                        f"{self.timeframe} on {groups} subscription(s)")
        self.setup_done.set()

    def received(self, index: int | None, reads: list[tuple[str, Any]]) -> None:
        """What each symbol's cache read found after a wake-up of subscription group ``index``
        (``None``: the watchdog's re-read, which counts as a message only if it found one)."""
        now = self.clock()
        now_ns = int(now * 1e9)
        with self.cond:
            builder = self.builder
            assert builder is not None
            found = any(read.rows or read.malformed for _, read in reads)
            if index is not None or found:
                self.stats["messages" if index is not None else "messages_late"] += 1
                self.last_message_at = now
                if self.stale_since is not None:
                    self._event("stream_recovered", f"messages again after "
                                f"{now - self.stale_since:.1f} s of silence; data fresh")
                    self.stale_since = None
            if index is not None:
                self.attempts[index] = 0
                if index not in self.connected:
                    self.connected.add(index)
                    self._event("stream_connected", f"subscription {index} receiving "
                                f"(connection {self.epochs[index]})")
            for symbol, read in reads:
                group = self.group_of[symbol]
                for reason in read.malformed:
                    self._note(StreamNote("malformed", symbol, reason))
                if read.overflow:
                    self._note(StreamNote("overflow", symbol, "more trades arrived than ccxt's "
                                          "cache holds; the current candle is taken from REST"))
                    self.epochs[group] += 1
                if not read.rows:
                    continue
                self.stats["rows"] += len(read.rows)
                epoch = self.epochs[group]
                self.group_data_ms[group] = max(self.group_data_ms[group],
                                                max(int(row[0]) for row in read.rows))
                if isinstance(builder, OhlcvCandleBuilder):
                    self._absorb(builder.on_candles(symbol, read.rows, epoch))
                else:
                    self._absorb(builder.on_trades(symbol, read.rows, epoch, now_ns))
            self.cond.notify_all()

    def disconnected(self, index: int, reason: str) -> int:
        """Group ``index`` lost its connection; returns the reconnection attempt number."""
        with self.cond:
            self.epochs[index] += 1
            self.stats["reconnects"] += 1
            if index in self.connected:
                self.connected.discard(index)
            self._event("stream_disconnected", f"subscription {index}: {reason}")
            attempt = self.attempts[index]
            self.attempts[index] += 1
            self.cond.notify_all()
            return attempt

    def silent(self, age_s: float) -> None:
        with self.cond:
            if self.stale_since is None:
                self.stale_since = self.clock() - age_s
            self._event("stream_silent", f"no message for {age_s:.1f} s (silence_s "
                        f"{self.config.silence_s:g}): data stale, reconnecting")
            self.cond.notify_all()

    def close_due(self, now: float) -> None:
        """Hand on (or give up) the forming candles ``close_grace_s`` past their close. A candle
        is handed on only if its connection has delivered data of a later time (another
        symbol's next candle or trade: the connection being ordered, everything the exchange
        sent before has arrived); otherwise it is given up and taken from REST."""
        now_ns = int(now * 1e9)
        with self.cond:
            builder = self.builder
            if builder is None:
                return
            for symbol in self.symbols:
                forming = builder.forming(symbol)
                if forming is None:
                    continue
                group = self.group_of[symbol]
                close_ms = (forming.ts + self.step_ns) // 1_000_000
                alive = group in self.connected and self.group_data_ms[group] >= close_ms
                self._absorb(builder.close_due(symbol, now_ns, self.epochs[group], alive))
            self.cond.notify_all()

    def event(self, kind: str, message: str, ts: int | None = None) -> None:
        with self.cond:
            self._event(kind, message, ts)
            self.cond.notify_all()

    def fail(self, message: str) -> None:
        with self.cond:
            self.fatal = message
            self._event("feed_failed", message)
            self.cond.notify_all()
        self.setup_done.set()

    # ---- under the lock -------------------------------------------------------------------
    def _event(self, kind: str, message: str, ts: int | None = None) -> None:
        self.stats[kind] += 1
        self.events.append((kind, message, ts))

    def _note(self, note: StreamNote) -> None:
        self._event(f"candle_{note.kind}", f"{note.symbol}: {note.message}", note.ts)

    def _absorb(self, result: BuildResult) -> None:
        for closed in result.closed:
            log.debug("closed %s %s by %s", closed.symbol, closed.bar, closed.how)
            self.ready[closed.symbol].setdefault(closed.bar.ts, (closed.bar, "stream"))
        for closed in result.revised:
            self.revisions.append((closed.symbol, closed.bar))
        for note in result.notes:
            self._note(note)

    def stale_reason(self, now: float) -> str:
        if self.fatal:
            return self.fatal
        age = now - self.last_message_at
        if age > self.config.silence_s:
            return f"stream silent for {age:.1f} s"
        return ""
