"""The candles a streaming trader traded, appended to the candle store
(:class:`~candlecast.data.store.CandleStore`) so that ``dvc repro`` trains on what was traded.

Appends are batched (``flush_s``) on a background thread, off the path from a candle to an order.
Each flush is :meth:`CandleStore.upsert` per series: atomic (temp file + rename), idempotent (keyed
by open time: a candle stored twice is stored once; a revised candle replaces the earlier values)
and safe beside other writers of the same series (the store's per-series lock). A failed flush
keeps its candles for the next one and is reported; :meth:`close` flushes what is left.

Only candles that pass the per-row rules (:func:`~candlecast.trading.candles.check_bar`) are
stored; the pipeline's validate stage then runs the full Great Expectations suite over them, as
over every stored candle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.trading.candles import Bar, check_bar, frame_from_bars

log = logging.getLogger(__name__)


class CandleAppender:
    """Buffers ``add(symbol, bar)`` and upserts the buffer every ``flush_s`` seconds."""

    def __init__(
        self,
        store: CandleStore,
        series: Mapping[str, SeriesId],
        *,
        flush_s: float = 5.0,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store, self.series, self.flush_s = store, dict(series), flush_s
        self.on_event = on_event or (lambda kind, message: None)
        self._buffer: dict[str, dict[int, Bar]] = {s: {} for s in self.series}
        self._lock = threading.Lock()
        self._io = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._closed = False
        self.stored = 0  # candles written (a rewrite of the same candle counts again)
        self.rejected = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="candle-appender",
                                            daemon=True)
            self._thread.start()

    def add(self, symbol: str, bar: Bar) -> bool:
        """Queue ``bar`` (the latest values of one open time win); ``False`` if it fails the
        per-row rules and is not stored."""
        step = int(self.series[symbol].step.value)
        verdict = check_bar(bar, None, step)
        if not verdict.ok:
            self.rejected += 1
            return False
        with self._lock:
            self._buffer[symbol][bar.ts] = bar
        return True

    def pending(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._buffer.values())

    def flush(self) -> int:
        """Write the buffer now; the number of candles written."""
        with self._io:
            with self._lock:
                batch = {s: dict(b) for s, b in self._buffer.items() if b}
                for s in batch:
                    self._buffer[s] = {}
            written = 0
            for symbol, bars in batch.items():
                series = self.series[symbol]
                frame = frame_from_bars([bars[t] for t in sorted(bars)], series.exchange,
                                        series.symbol, series.timeframe)
                try:
                    self.store.upsert(series, frame)
                except Exception as error:  # noqa: BLE001 - reported, kept, retried
                    with self._lock:  # put them back (newer values for a ts win)
                        self._buffer[symbol] = bars | self._buffer[symbol]
                    log.warning("candle store append failed for %s: %r", series.key, error)
                    self.on_event("store_error", f"{series.key}: {len(bars)} candle(s) not "
                                  f"appended yet to {self.store.root}: {error!r:.200}")
                    continue
                written += len(bars)
            self.stored += written
            return written

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            if self.pending():
                self.flush()

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.flush()
