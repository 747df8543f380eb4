"""Where closed candles come from: stored candles replayed on an accelerated clock, or ccxt.

A feed hands the trader one *tick* at a time: the candles of every traded symbol that share one
open time. ``next_tick(after, wait_s)`` returns a :class:`Tick`, :data:`IDLE` when nothing is due
within ``wait_s`` seconds (the trader then checks its kill/pause files and asks again), or
:data:`END` when a replay is exhausted. ``history(symbol, n, before)`` returns the candles used to
prime the feature engine. The streaming feed (WebSocket, ``trade.feed: stream``) is in
:mod:`candlecast.trading.stream`.
"""

from __future__ import annotations

import bisect
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.exchange.errors import ExchangeRequestError
from candlecast.exchange.retry import BackoffPolicy, Retrier
from candlecast.exchange.source import OhlcvSource
from candlecast.trading.candles import Bar, bars_from_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tick:
    """Candles with open time ``ts`` (ns), by symbol (a symbol may be missing: its gap).
    ``stale`` is why the feed's data is stale when it handed the tick on ("" when fresh; the
    streaming feed while its stream is silent): the trader then opens nothing."""

    ts: int
    bars: dict[str, Bar]
    stale: str = ""


IDLE = "idle"
END = "end"


class CandleFeed(Protocol):
    def history(self, symbol: str, n: int, before: int | None) -> list[Bar]: ...

    def next_tick(self, after: Mapping[str, int | None], wait_s: float) -> Tick | str: ...


class ReplayFeed:
    """Stored candles replayed ``speed`` times faster than real time (``speed=0``: as fast as
    possible). The first replayed candle is the first at or after ``start`` (default: right after
    the priming history); candles before it are the priming history. ``end`` is exclusive."""

    def __init__(
        self,
        candles: Mapping[str, pd.DataFrame],
        timeframe: str,
        *,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        speed: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError(f"replay speed must be >= 0, got {speed}")
        self.timeframe = timeframe
        self.step_s = pd.Timedelta(SeriesId("x", "A/B", timeframe).step).total_seconds()
        self.bars = {sym: bars_from_frame(frame) for sym, frame in candles.items()}
        self._ts = {sym: [b.ts for b in bars] for sym, bars in self.bars.items()}
        for sym, ts in self._ts.items():
            if any(b <= a for a, b in zip(ts, ts[1:], strict=False)):
                raise ValueError(f"replay candles of {sym} must be sorted without duplicates")
        self.start_ns = None if start is None else int(pd.Timestamp(start).value)
        self.end_ns = None if end is None else int(pd.Timestamp(end).value)
        self.speed, self.sleep, self.clock = speed, sleep, clock
        self._due: float | None = None

    @classmethod
    def from_store(cls, store: CandleStore, series: list[SeriesId], **kwargs: object) -> ReplayFeed:
        frames = {}
        for s in series:
            frame = store.read(s)
            if frame.empty:
                raise ValueError(f"no stored candles for {s.key} in {store.root}")
            frames[s.symbol] = frame
        return cls(frames, series[0].timeframe, **kwargs)  # type: ignore[arg-type]

    def history(self, symbol: str, n: int, before: int | None) -> list[Bar]:
        limit = before if before is not None else self.start_ns
        if limit is None or n <= 0:
            return []
        i = bisect.bisect_left(self._ts[symbol], limit)
        return self.bars[symbol][max(0, i - n):i]

    def _first_after(self, symbol: str, floor: int | None) -> int:
        ts = self._ts[symbol]
        if floor is not None:
            return bisect.bisect_right(ts, floor)
        return 0 if self.start_ns is None else bisect.bisect_left(ts, self.start_ns)

    def next_tick(self, after: Mapping[str, int | None], wait_s: float) -> Tick | str:
        heads = {sym: self._first_after(sym, after.get(sym)) for sym in self.bars}
        pending = [self._ts[sym][i] for sym, i in heads.items() if i < len(self._ts[sym])]
        if not pending:
            return END
        nxt = min(pending)
        if self.end_ns is not None and nxt >= self.end_ns:
            return END
        if self.speed > 0:
            left = 0.0 if self._due is None else self._due - self.clock()
            if left > 0:
                self.sleep(min(wait_s, left))
                if self.clock() < self._due:  # type: ignore[operator]
                    return IDLE
            self._due = self.clock() + self.step_s / self.speed
        bars = {sym: self.bars[sym][i] for sym, i in heads.items()
                if i < len(self._ts[sym]) and self._ts[sym][i] == nxt}
        return Tick(nxt, bars)


class CcxtFeed:
    """Closed candles from an exchange through :class:`candlecast.exchange.CcxtOhlcvSource`.

    A candle is asked for ``close_delay_s`` after its close; everything after the last processed
    candle is fetched, so candles missed during an outage are backfilled (a hole the exchange
    itself has stays a gap). Transient errors are retried with backoff; when retries run out the
    feed reports and tries again at the next poll.
    """

    def __init__(
        self,
        source: OhlcvSource,
        series: list[SeriesId],
        *,
        close_delay_s: float = 2.0,
        policy: BackoffPolicy | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.source = source
        self.series = {s.symbol: s for s in series}
        self.timeframe = series[0].timeframe
        self.step_ns = int(series[0].step.value)
        self.close_delay_s = close_delay_s
        self.retrier = Retrier(policy or BackoffPolicy(3, 0.5, 10.0), sleep=sleep)
        self.now, self.sleep = now, sleep
        self.on_event = on_event or (lambda kind, message: None)
        self._buffer: dict[str, list[Bar]] = {s: [] for s in self.series}

    def __repr__(self) -> str:
        return f"CcxtFeed({self.source!r}, {sorted(self.series)})"

    def _fetch(self, symbol: str, since_ns: int) -> list[Bar]:
        now_ns = int(self.now() * 1e9)
        out: list[Bar] = []
        cursor_ms = since_ns // 1_000_000
        while True:
            page = self.retrier.call(
                functools.partial(self.source.fetch_ohlcv_page, symbol, self.timeframe,
                                  cursor_ms, None),
                f"fetch_ohlcv {symbol} {self.timeframe}",
            )
            rows = [Bar(int(ms) * 1_000_000, o, h, lo, c, v) for ms, o, h, lo, c, v in page
                    if ms >= cursor_ms]
            closed = [b for b in rows if b.ts + self.step_ns <= now_ns]
            out.extend(closed)
            if not closed or len(closed) < len(rows):  # nothing new, or reached the open candle
                return out
            cursor_ms = closed[-1].ts // 1_000_000 + self.step_ns // 1_000_000

    def history(self, symbol: str, n: int, before: int | None) -> list[Bar]:
        now_ns = int(self.now() * 1e9) if before is None else before + self.step_ns
        since = (now_ns // self.step_ns - n - 1) * self.step_ns
        bars = [b for b in self._fetch(symbol, since) if before is None or b.ts < before]
        return bars[-n:]

    def next_tick(self, after: Mapping[str, int | None], wait_s: float) -> Tick | str:
        for symbol, buffer in self._buffer.items():
            if buffer:
                continue
            last = after.get(symbol)
            first = (last + self.step_ns) if last is not None else None
            now_ns = int(self.now() * 1e9)
            if first is None:
                first = (now_ns // self.step_ns - 1) * self.step_ns
            due_ns = first + self.step_ns + int(self.close_delay_s * 1e9)
            if now_ns < due_ns:
                continue
            try:
                self._buffer[symbol] = self._fetch(symbol, first)
            except ExchangeRequestError as error:
                self.on_event("feed_error", f"{symbol}: {error}")
        ready = [buf[0].ts for buf in self._buffer.values() if buf]
        if not ready:
            self.sleep(wait_s)
            return IDLE
        ts = min(ready)
        bars = {sym: buf.pop(0) for sym, buf in self._buffer.items() if buf and buf[0].ts == ts}
        return Tick(ts, bars)
