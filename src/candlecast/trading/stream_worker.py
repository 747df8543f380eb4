"""The asyncio side of the streaming feed: one thread, one event loop, one ccxt.pro exchange.

:class:`StreamWorker` subscribes (``watch_ohlcv[_for_symbols]`` or
``watch_trades[_for_symbols]``: many symbols on one connection where ccxt.pro offers it), feeds
what arrives to the candle builder held by the
:class:`~candlecast.trading.stream_hub.StreamHub` (shared with the trader's
thread, under its lock), and keeps the connection alive:

* a failed or closed connection is replaced after a backoff with jitter
  (:class:`~candlecast.exchange.retry.BackoffPolicy`: ``reconnect_base_s * 2**n`` capped at
  ``reconnect_max_s``, uniform in ``[d/2, d]``), reset by the first message afterwards;
* a watchdog every ``watchdog_interval_s`` reads the caches once more (messages whose wake-up
  was lost), closes candles that are ``close_grace_s`` past their close, and when no message came
  for ``silence_s`` it reports the stream silent and closes the connection, so the next watch
  reconnects. (A message ccxt cannot parse stops ccxt.pro's receive loop for good, with the
  socket still open: the connection then looks alive and stays silent; only this watchdog gets
  it going again. Measured with the fake exchange.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from candlecast.exchange.errors import ExchangeRequestError, PermanentExchangeError
from candlecast.exchange.retry import BackoffPolicy

if TYPE_CHECKING:
    from candlecast.trading.stream_hub import StreamHub

log = logging.getLogger(__name__)


class StreamWorker:
    """Runs the subscriptions of ``hub``'s symbols on a daemon thread until :meth:`stop`."""

    def __init__(self, connect: Callable[[], Any], hub: StreamHub,
                 rng: random.Random | None = None) -> None:
        self.connect, self.hub = connect, hub
        cfg = hub.config
        self.policy = BackoffPolicy(10**6, cfg.reconnect_base_s, cfg.reconnect_max_s)
        self.rng = rng or random.Random()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._source: Any = None
        self._closing_reason: str | None = None
        self._consumers: dict[int, asyncio.Task[None]] = {}
        self._generation = 0  # connections replaced so far (groups may share one)
        self._reconnecting = 0

    # ---- thread ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run_loop, name="candle-stream",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run_loop(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as error:  # noqa: BLE001 - reported to the trader's thread
            log.exception("candle stream worker died")
            self.hub.fail(f"stream worker died: {error!r}")
        finally:
            self._ready.set()

    # ---- main ----------------------------------------------------------------------------
    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        try:
            self._source = self.connect()
        except (ValueError, ExchangeRequestError) as error:
            self.hub.fail(str(error))
            return
        tasks: list[asyncio.Task[None]] = []
        try:
            groups = await self._setup()
            if groups is None:
                return
            tasks = [asyncio.create_task(self._supervise(i, g)) for i, g in enumerate(groups)]
            tasks.append(asyncio.create_task(self._watchdog()))
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._source.close()

    async def _setup(self) -> list[list[str]] | None:
        """Markets loaded (transient failures retried), symbols and stream kind checked; the
        subscription groups (one connection each where the exchange allows it)."""
        hub, source = self.hub, self._source
        attempt = 0
        while True:
            try:
                await source.load_markets()
                break
            except PermanentExchangeError as error:
                hub.fail(f"{source.id}: could not load markets: {error}")
                return None
            except ExchangeRequestError as error:
                delay = self.policy.delay(attempt, self.rng)
                attempt += 1
                hub.event("stream_error", f"load_markets: {error}; retry in {delay:.2f} s")
                if await self._sleep_or_stop(delay):
                    return None
        unknown = [s for s in hub.symbols if s not in source.symbols()]
        if unknown:
            hub.fail(f"{source.id}: unknown symbol(s) {unknown} for the stream")
            return None
        caps = source.capabilities()
        kind = hub.config.kind
        if kind == "auto":
            kind = "ohlcv" if caps.ohlcv else "trades"
        if (kind == "ohlcv" and not caps.ohlcv) or (kind == "trades" and not caps.trades):
            hub.fail(f"{source.id} streams no {'candles' if kind == 'ohlcv' else 'trades'} in "
                     "ccxt.pro (trade.stream.kind)")
            return None
        timeframes = source.timeframes()
        if kind == "ohlcv" and timeframes is not None and hub.timeframe not in timeframes:
            hub.fail(f"{source.id} streams no {hub.timeframe} candles; it offers "
                     f"{sorted(timeframes)} (or use trade.stream.kind: trades)")
            return None
        many = caps.ohlcv_for_symbols if kind == "ohlcv" else caps.trades_for_symbols
        groups = [list(hub.symbols)] if many else [[s] for s in hub.symbols]
        hub.set_kind(kind, len(groups))
        return groups

    async def _sleep_or_stop(self, seconds: float) -> bool:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _supervise(self, index: int, group: list[str]) -> None:
        """Keep one subscription group streaming: consume until it fails, replace the
        connection, back off, again."""
        hub = self.hub
        while True:
            generation = self._generation
            consumer = asyncio.create_task(self._consume(index, group))
            self._consumers[index] = consumer
            try:
                await consumer
                reason = "the watch ended"
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    consumer.cancel()
                    raise  # shutdown
                reason = self._closing_reason or "the connection was closed"
            except ExchangeRequestError as error:
                reason = str(error)
            except Exception as error:  # noqa: BLE001 - a ccxt bug must not end the stream
                reason = f"{type(error).__name__}: {error}"
            attempt = await self._replace_connection(index, reason, generation)
            delay = self.policy.delay(attempt, self.rng)
            hub.event("reconnect", f"subscription {index} ({','.join(group)[:60]}): "
                      f"reconnecting in {delay:.2f} s")
            await asyncio.sleep(delay)

    async def _replace_connection(self, index: int, reason: str, generation: int) -> int:
        """Read what the old connection delivered (under its epoch), close it (once for the
        groups sharing it: ``generation``), then start a new epoch; the attempt number."""
        self._reconnecting += 1
        try:
            self.hub.received(None, self._read_all())
            if generation == self._generation:
                self._generation += 1
                try:
                    await self._source.reconnect()
                except ExchangeRequestError as error:
                    self.hub.event("stream_error", f"closing the connection: {error}")
                self.hub.received(None, self._read_all())
            return self.hub.disconnected(index, reason)
        finally:
            self._reconnecting -= 1

    async def _consume(self, index: int, group: list[str]) -> None:
        hub, source = self.hub, self._source
        while True:
            if hub.kind == "ohlcv":
                await source.wait_candles(group, hub.timeframe)
            else:
                await source.wait_trades(group)
            self._closing_reason = None
            hub.received(index, self._read_all())

    def _read_all(self) -> list[tuple[str, Any]]:
        """What every symbol's ccxt cache got since the last read: a wake-up of one symbol's
        watch may carry other symbols' messages that resolved no future (see
        :mod:`candlecast.exchange.ccxt_stream`), so every read covers all symbols."""
        hub, source = self.hub, self._source
        if hub.kind == "ohlcv":
            return source.candle_reads(hub.symbols, hub.timeframe)
        return source.trade_reads(hub.symbols)

    async def _watchdog(self) -> None:
        hub = self.hub
        cfg = hub.config
        last_reset = -float("inf")
        while True:
            await asyncio.sleep(cfg.watchdog_interval_s)
            if self._reconnecting:
                continue  # the old connection's data is being read under its own epoch
            hub.received(None, self._read_all())  # messages whose wake-up was lost
            now = hub.clock()
            hub.close_due(now)
            age = now - hub.last_message_at
            if age > cfg.silence_s and now - last_reset > cfg.silence_s:
                last_reset = now
                self._closing_reason = f"no message for {age:.1f} s"
                hub.silent(age)
                for consumer in self._consumers.values():
                    consumer.cancel()  # their supervisors replace the connection
