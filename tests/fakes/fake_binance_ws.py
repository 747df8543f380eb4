"""A fake of Binance's public spot WebSocket streams (and the REST klines behind them) on
127.0.0.1, replaying real candles, for the REAL ``ccxt.pro.binance`` client.

The protocol is Binance's (what ``ccxt.pro.binance`` speaks): the client opens
``ws://127.0.0.1:<port>/ws/<n>``, sends ``{"method": "SUBSCRIBE", "params": ["btcusd@kline_30m",
...], "id": 1}`` and gets ``{"result": null, "id": 1}``; then the server pushes ``kline`` events
(the forming candle's snapshot after each trade) and ``trade`` events to the subscribers of each
stream name. Many streams share one connection, as on Binance.

Replay: the candles of each market (real bundled candles, re-listed as Binance markets) are
played on a fake exchange clock (:class:`FakeClock`, ``speed`` exchange seconds per wall second):
candle ``T`` is four trades at ``T + f * step`` (``f`` in :data:`TRADE_OFFSETS`) whose prices are
its open, high, low and close (in an order that keeps the running high/low valid) and whose
amounts are a quarter of its volume each (so the exact sum is the volume); after each trade a
kline snapshot is sent, the last one equal to the candle. Aggregating the trades or taking the
last snapshot gives the stored candle exactly.

Faults (:class:`StreamFault`, by streamed candle index and position in the candle):

* ``disconnect``: every connection is aborted (TCP reset) at that moment;
* ``duplicate``: the candle's second message (trade and kline) is sent twice;
* ``out_of_order``: its second and third messages swap places;
* ``revise``: one and a half candles after its close, the candle changes: a kline snapshot with
  1.5 x the volume, and a late trade of half its volume at its close price; the REST API serves
  the revised candle from then on;
* ``stall``: nothing is sent for ``candles`` candles (connections stay open; lost messages);
* ``malformed``: a truncated JSON frame to every connection (stops ccxt.pro's receive loop);
* ``bad_value``: the candle's second message with a negative price (valid JSON).

``ReplayedBinance`` is the REST side (``tests/fakes/fake_binance.py``'s fake with the same real
candles, served up to the fake clock's now, the forming candle included).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from aiohttp import WSMsgType, web
from fake_binance import TIMEFRAME_MS, FakeBinance

TRADE_OFFSETS = (0.02, 0.3, 0.6, 0.98)


class FakeClock:
    """Exchange time in seconds: ``start_s`` until :meth:`run`, then ``speed`` times faster than
    the wall (the player of a stream with ``hold_s`` may :meth:`advance` it)."""

    def __init__(self, start_s: float, speed: float = 1.0) -> None:
        self.start_s, self.speed = start_s, speed
        self.t0: float | None = None

    def run(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        if self.t0 is None:
            return self.start_s
        return self.start_s + (time.monotonic() - self.t0) * self.speed

    def now_ms(self) -> int:
        return int(self() * 1000)

    def advance(self, seconds: float) -> None:
        self.start_s += seconds

    def wall_delay(self, at_s: float) -> float:
        """Wall seconds until the exchange clock reads ``at_s``."""
        return max(0.0, (at_s - self()) / self.speed)


@dataclass
class StreamFault:
    candle: int  # index among the streamed candles
    kind: str
    at: float = 0.5  # position in the candle (fraction of the timeframe)
    candles: float = 0.0  # stall length
    market: str | None = None  # None: the first market


@dataclass
class ReplayedBinance(FakeBinance):
    """The REST klines of :class:`FakeBinanceStream`'s candles, up to the fake clock's now."""

    tables: dict[str, list[list[Any]]] = field(default_factory=dict)
    clock: FakeClock | None = None
    overrides: dict[tuple[str, int], list[Any]] = field(default_factory=dict)

    def rows(self, market_id: str, interval: str, start_ms: int | None, end_ms: int | None,
             limit: int) -> list[list[Any]]:
        assert self.clock is not None
        now_ms = self.clock.now_ms()
        table = self.tables[market_id]
        opens = [r[0] for r in table]
        last = bisect.bisect_right(opens, now_ms)  # candles opened by now (the forming one too)
        first = max(0, last - limit) if start_ms is None else bisect.bisect_left(opens, start_ms)
        out = []
        for row in table[first:last]:
            if end_ms is not None and row[0] > end_ms:
                break
            row = self.overrides.get((market_id, row[0]), row)
            out.append([row[0], *(repr(float(x)) for x in row[1:6]), row[0] + 1, "0", 4, "0",
                        "0", "0"])
            if len(out) >= limit:
                break
        return out


def binance_tables(frames: dict[str, pd.DataFrame]) -> dict[str, list[list[Any]]]:
    """``{market id: [[open_ms, o, h, l, c, v], ...]}`` from canonical candle tables."""
    out = {}
    for market, frame in frames.items():
        ms = (pd.DatetimeIndex(frame["timestamp"]).asi8 // 1_000_000).tolist()
        cols = [frame[c].astype(float).tolist() for c in ("open", "high", "low", "close",
                                                          "volume")]
        out[market] = [[t, *v] for t, *v in zip(ms, *cols, strict=True)]
    return out


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    streams: set[str]
    request: web.Request


@dataclass(order=True)
class _Message:
    at_s: float
    seq: int
    kind: str = field(compare=False)  # "data" | "disconnect" | "stall" | "malformed" | "revise"
    stream: str = field(compare=False, default="")
    body: str = field(compare=False, default="")
    extra: Any = field(compare=False, default=None)


class FakeBinanceStream:
    """The WebSocket server; ``start()`` serves, ``play()`` starts the replay at the clock."""

    def __init__(self, tables: dict[str, list[list[Any]]], first_open_ms: int, n: int,
                 timeframe: str, clock: FakeClock, rest: ReplayedBinance | None = None,
                 faults: list[StreamFault] | None = None,
                 trade_offsets: tuple[float, ...] = TRADE_OFFSETS,
                 hold_s: float = 0.0) -> None:
        self.tables, self.timeframe, self.clock, self.rest = tables, timeframe, clock, rest
        self.trade_offsets, self.hold_s = trade_offsets, hold_s
        self.step_ms = TIMEFRAME_MS[timeframe]
        self.faults = list(faults or [])
        self.markets = list(tables)
        self.connections: list[_Conn] = []
        self.connections_opened = 0
        self.subscriptions: list[list[str]] = []
        self.sent: dict[str, int] = {"kline": 0, "trade": 0}
        self.fired: list[str] = []
        self.last_trade_sent: dict[tuple[str, int], float] = {}  # (market, open ms) -> wall
        self.stalled_until = -1.0
        self.first_open_ms, self.n = first_open_ms, n
        self.messages = self._timeline(first_open_ms, n)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._player: asyncio.Task[None] | None = None
        self.port = 0
        self.done = threading.Event()

    # ---- the replay ------------------------------------------------------------------------
    def candles(self, market: str) -> list[list[Any]]:
        """The streamed candles of ``market`` (the bundled ones in the replayed window)."""
        end = self.first_open_ms + self.n * self.step_ms
        return [r for r in self.tables[market] if self.first_open_ms <= r[0] < end]

    def _timeline(self, first_open_ms: int, n: int) -> list[_Message]:
        out: list[_Message] = []
        seq = 0
        faults = {(f.candle, f.market or self.markets[0], f.kind): f for f in self.faults}
        for market in self.markets:
            low = market.lower()
            for row in self.candles(market):
                k = (row[0] - first_open_ms) // self.step_ms
                msgs = self._candle_messages(market, low, row, k, faults)
                for at, stream, body in msgs:
                    out.append(_Message(at, seq, "data", stream, body))
                    seq += 1
                if (k, market, "revise") in faults:
                    at = (row[0] + self.step_ms * 2.5) / 1000
                    out.append(_Message(at, seq, "revise", body=market, extra=row))
                    seq += 1
        for f in self.faults:
            at = (first_open_ms + (f.candle + f.at) * self.step_ms) / 1000
            if f.kind in ("disconnect", "malformed"):
                out.append(_Message(at, seq, f.kind))
            elif f.kind == "stall":
                out.append(_Message(at, seq, "stall", extra=at + f.candles * self.step_ms / 1000))
            seq += 1
        return sorted(out)

    def _candle_messages(self, market: str, low: str, row: list[Any], k: int,
                         faults: dict[tuple[int, str, str], StreamFault]
                         ) -> list[tuple[float, str, str]]:
        open_ms, o, h, lo, c, v = row
        prices = [o, h, lo, c] if c >= o else [o, lo, h, c]
        amount = v / 4
        msgs = []
        hi_, lo_ = o, o
        for j, (frac, price) in enumerate(zip(self.trade_offsets, prices, strict=True)):
            t_ms = open_ms + int(frac * self.step_ms)
            hi_, lo_ = max(hi_, price), min(lo_, price)
            snap = (o, hi_, lo_, price, amount * (j + 1)) if j < 3 else (o, h, lo, c, v)
            if j == 1 and (k, market, "bad_value") in faults:
                price, snap = -price, (-o, *snap[1:])
            trade = {"e": "trade", "E": t_ms, "s": market, "t": open_ms // 1000 + j,
                     "p": repr(float(price)), "q": repr(float(amount)), "T": t_ms,
                     "m": False, "M": True}
            kline = self._kline(market, open_ms, snap, t_ms, j == 3)
            entries = [(t_ms / 1000, f"{low}@trade", json.dumps(trade)),
                       (t_ms / 1000, f"{low}@kline_{self.timeframe}", json.dumps(kline))]
            if j == 1 and (k, market, "duplicate") in faults:
                entries += entries
            msgs.append(entries)
        if (k, market, "out_of_order") in faults:
            t1, t2 = msgs[1][0][0], msgs[2][0][0]
            msgs[1] = [(t2, s, b) for _, s, b in msgs[1]]
            msgs[2] = [(t1, s, b) for _, s, b in msgs[2]]
        return [e for entries in msgs for e in entries]

    def _kline(self, market: str, open_ms: int, snap: tuple[float, ...], t_ms: int,
               closed: bool) -> dict[str, Any]:
        o, h, lo, c, v = (repr(float(x)) for x in snap)
        return {"e": "kline", "E": t_ms, "s": market,
                "k": {"t": open_ms, "T": open_ms + self.step_ms - 1, "s": market,
                      "i": self.timeframe, "f": 0, "L": 3, "o": o, "c": c, "h": h, "l": lo,
                      "v": v, "n": 4, "x": closed, "q": "0", "V": "0", "Q": "0", "B": "0"}}

    async def _play(self) -> None:
        last_close = time.monotonic()
        step_s = self.step_ms / 1000
        for msg in self.messages:
            delay = self.clock.wall_delay(msg.at_s)
            if self.hold_s and delay > 0.2 and hasattr(self.clock, "advance"):
                # a clock that can jump: skip the quiet middle of a candle, but give the feeds
                # hold_s of wall time after each close first
                wait = self.hold_s - (time.monotonic() - last_close)
                if wait > 0:
                    await asyncio.sleep(wait)
                self.clock.advance(max(0.0, self.clock.wall_delay(msg.at_s) - 0.05))
                delay = self.clock.wall_delay(msg.at_s)
            if delay > 0:
                await asyncio.sleep(delay)
            if msg.kind == "data" and (msg.at_s % step_s) < step_s / 100:
                last_close = time.monotonic()  # the first message after a candle's close
            await self._dispatch(msg)
        self.done.set()

    async def _dispatch(self, msg: _Message) -> None:
        if msg.kind == "stall":
            self.stalled_until = msg.extra
            self.fired.append("stall")
            return
        if msg.at_s < self.stalled_until:
            return  # lost in the stall
        if msg.kind == "disconnect":
            self.fired.append("disconnect")
            for conn in list(self.connections):
                if conn.request.transport is not None:
                    conn.request.transport.abort()
            self.connections.clear()
            return
        if msg.kind == "malformed":
            self.fired.append("malformed")
            await self._send_all('{"e":"kline","E":1,"s":"BTCUSD","k":{"t":', None)
            return
        if msg.kind == "revise":
            self.fired.append("revise")
            market, row = msg.body, msg.extra
            open_ms, o, h, lo, c, v = row
            revised = [open_ms, o, h, lo, c, v * 1.5]
            if self.rest is not None:
                self.rest.overrides[(market, open_ms)] = revised
            low = market.lower()
            t_ms = int(msg.at_s * 1000)
            kline = self._kline(market, open_ms, tuple(revised[1:]), t_ms, True)
            trade = {"e": "trade", "E": t_ms, "s": market, "t": open_ms // 1000 + 9,
                     "p": repr(float(c)), "q": repr(float(v / 2)),
                     "T": open_ms + int(0.99 * self.step_ms), "m": False, "M": True}
            await self._send_all(json.dumps(kline), f"{low}@kline_{self.timeframe}")
            await self._send_all(json.dumps(trade), f"{low}@trade")
            return
        if msg.stream.endswith("@trade"):
            self.sent["trade"] += 1
        else:
            self.sent["kline"] += 1
        await self._send_all(msg.body, msg.stream)
        if msg.stream.endswith("@trade"):
            data = json.loads(msg.body)
            key = (data["s"], data["T"] - data["T"] % self.step_ms)
            self.last_trade_sent[key] = time.time()

    async def _send_all(self, body: str, stream: str | None) -> None:
        for conn in list(self.connections):
            if stream is None or stream in conn.streams:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_str(body)

    # ---- the server ------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections_opened += 1
        entry = _Conn(ws, set(), request)
        self.connections.append(entry)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("method") == "SUBSCRIBE":
                    entry.streams.update(data["params"])
                    self.subscriptions.append(list(data["params"]))
                    await ws.send_str(json.dumps({"result": None, "id": data["id"]}))
        finally:
            if entry in self.connections:
                self.connections.remove(entry)
        return ws

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/ws/{n}", self._handle)
        app.router.add_get("/ws", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self._started.set()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._serve())
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
        loop.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> FakeBinanceStream:
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-binance-ws")
        self._thread.start()
        self._started.wait(10)
        return self

    def play(self) -> None:
        """Start the clock and the replay."""
        assert self._loop is not None

        def begin() -> None:
            self.clock.run()
            self._player = asyncio.ensure_future(self._play())

        self._loop.call_soon_threadsafe(begin)

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._player is not None:
                self._player.cancel()
            for conn in list(self.connections):
                with contextlib.suppress(Exception):
                    await conn.ws.close()
            loop.stop()

        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(shutdown()))
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeBinanceStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
