"""Public market-data streams through ccxt's own WebSocket support (``ccxt.pro``), in candlecast's
terms. The only streaming code that imports ccxt.

:class:`CcxtStreamSource` wraps one *async* ``ccxt.pro`` exchange and is used from one asyncio
event loop (the streaming feed's worker thread). It offers two primitives per kind of stream:

* ``await wait_candles(symbols, timeframe)`` / ``await wait_trades(symbols)``: one ``watch_*``
  call (``watch_ohlcv_for_symbols`` / ``watch_trades_for_symbols`` when the exchange streams many
  symbols on one connection, else ``watch_ohlcv`` / ``watch_trades`` for one symbol). It returns
  when the exchange sent something; its value is only a wake-up.
* ``candle_updates(symbol, timeframe)`` / ``trade_updates(symbol)``: what changed in ccxt's own
  caches (``exchange.ohlcvs`` / ``exchange.trades``) since the last call.

Why not use the value ``watch_*`` returns: with ``newUpdates`` ccxt returns the updates of the ONE
symbol whose message resolved the race of futures, and a message of another symbol that arrives
in the same burst resolves a future nobody awaits, so that symbol's updates surface only with its
next message (measured with the fake Binance stream: the second symbol of every burst was never
returned; see also ccxt issue #22125). ccxt's caches do receive every message, so reading them
after every wake-up loses nothing. A candle cache updates a candle in place; the tail of the last
few candles is compared with what was read before, so a changed (revised) older candle shows up
as well as a new one.

ccxt.pro's receive loop also drains aiohttp's message queue by hand and under-counts what it
took (aiohttp adds a fixed overhead per message to the queue's size, ccxt subtracts only the
payloads): after a few thousand messages that arrived in bursts the queue's size stays above
aiohttp's low-water mark with the queue empty, aiohttp never resumes reading, and the
connection is wedged, open and silent (measured with ccxt 4.5.64 and aiohttp 3.14.5: 50 symbols
on one connection stopped after about 4,200 trades at any rate from 2,500 a second). The
clients of this adapter read one message at a time instead (:class:`_OneByOneClient`), which
keeps aiohttp's accounting exact.

Every failure is a :class:`~candlecast.exchange.errors.TransientExchangeError` (dropped
connection, timeout, a message ccxt could not parse) or a
:class:`~candlecast.exchange.errors.PermanentExchangeError` (unknown symbol, unsupported stream).
No credentials are ever set: market data is public.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.pro as ccxtpro
from ccxt.async_support.base.ws.client import Client

from candlecast.exchange.ccxt_source import override_api_urls
from candlecast.exchange.errors import (
    ExchangeRequestError,
    TransientExchangeError,
    UnknownExchangeError,
)
from candlecast.exchange.orders import translate_ccxt_error
from candlecast.exchange.source import Candle

#: ``(time_ms, trade_id, price, amount)`` of one public trade
StreamTrade = tuple[int, str, float, float]

#: candles at the end of ccxt's OHLCV cache compared on every read (new or changed ones)
CANDLE_TAIL = 3


@dataclass(frozen=True)
class CacheRead:
    """What a read of ccxt's cache found: ``rows`` (candles or trades), the reasons of entries
    that could not be read (``malformed``), and whether more arrived than ccxt's cache holds
    (``overflow``: some were dropped before they could be read)."""

    rows: list[Any]
    malformed: tuple[str, ...] = ()
    overflow: bool = False


_NOTHING = CacheRead([])


@dataclass(frozen=True)
class StreamCapabilities:
    """What the exchange streams, per ccxt's ``has``."""

    ohlcv: bool
    ohlcv_for_symbols: bool
    trades: bool
    trades_for_symbols: bool


class _OneByOneClient(Client):  # type: ignore[misc]
    """ccxt.pro's WebSocket client without its hand-drain of aiohttp's queue (see the module
    docstring): ``buffer`` is only used by that drain, so with ``None`` every message is read
    through aiohttp's own ``receive()``."""

    @property
    def buffer(self) -> None:
        return None


def _read_one_by_one(exchange: Any) -> None:
    """Make every WebSocket client ``exchange`` creates a :class:`_OneByOneClient`."""
    make_client = exchange.client

    def client(url: str) -> Any:
        made = make_client(url)
        if type(made) is Client:
            made.__class__ = _OneByOneClient
        return made

    exchange.client = client


def override_ws_urls(exchange: Any, ws_url: str) -> None:
    """Replace scheme and host of every URL under ``exchange.urls['api']['ws']`` by ``ws_url``'s
    (paths kept), e.g. ``ws://127.0.0.1:9000`` for a fake exchange."""
    base = urlsplit(ws_url)
    if base.scheme not in ("ws", "wss") or not base.netloc:
        raise ValueError(f"ws_url {ws_url!r} must be an absolute URL like 'ws://127.0.0.1:9000'")

    def rewrite(node: Any) -> Any:
        if isinstance(node, str):
            return urlsplit(node)._replace(scheme=base.scheme, netloc=base.netloc).geturl()
        if isinstance(node, dict):
            return {key: rewrite(value) for key, value in node.items()}
        return node

    api = exchange.urls.get("api") or {}
    if "ws" not in api:
        raise ValueError(f"{exchange.id}: ccxt.pro knows no WebSocket URL to re-point")
    api["ws"] = rewrite(api["ws"])


def stream_exchanges() -> list[str]:
    """Every exchange id ccxt.pro has a WebSocket implementation for."""
    return list(ccxtpro.exchanges)


class CcxtStreamSource:
    """Candle and trade streams of one ccxt.pro exchange; create it on the loop that uses it."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self.id: str = exchange.id
        self._candles_seen: dict[tuple[str, str], dict[int, tuple[float, ...]]] = {}
        self._trade_marks: dict[str, Any] = {}

    @classmethod
    def create(
        cls,
        exchange_id: str,
        *,
        timeout_ms: int = 10_000,
        api_url: str | None = None,
        ws_url: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> CcxtStreamSource:
        """A ccxt.pro exchange with rate limiting on. ``api_url`` re-points its REST endpoints
        (markets are loaded over REST), ``ws_url`` its WebSocket endpoints (tests, proxies)."""
        if exchange_id not in ccxtpro.exchanges:
            raise UnknownExchangeError(
                f"exchange {exchange_id!r} has no WebSocket support in ccxt {ccxt.__version__} "
                f"(ccxt.pro knows {len(ccxtpro.exchanges)} exchanges)")
        config: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_ms)}
        if options:
            config["options"] = dict(options)
        exchange = getattr(ccxtpro, exchange_id)(config)
        if api_url is not None:
            ws_urls = exchange.urls["api"].get("ws")
            override_api_urls(exchange, api_url)
            if ws_urls is not None:
                exchange.urls["api"]["ws"] = ws_urls
        if ws_url is not None:
            override_ws_urls(exchange, ws_url)
        _read_one_by_one(exchange)
        return cls(exchange)

    def __repr__(self) -> str:
        return f"CcxtStreamSource({self.id!r})"

    # ---- metadata ------------------------------------------------------------------------
    def capabilities(self) -> StreamCapabilities:
        has = self._exchange.has
        return StreamCapabilities(bool(has.get("watchOHLCV")),
                                  bool(has.get("watchOHLCVForSymbols")),
                                  bool(has.get("watchTrades")),
                                  bool(has.get("watchTradesForSymbols")))

    async def load_markets(self) -> None:
        await self._call(self._exchange.load_markets(), "load_markets")

    def symbols(self) -> frozenset[str]:
        return frozenset(self._exchange.markets or {})

    def timeframes(self) -> frozenset[str] | None:
        return frozenset(getattr(self._exchange, "timeframes", None) or {}) or None

    # ---- candles ---------------------------------------------------------------------------
    async def wait_candles(self, symbols: list[str], timeframe: str) -> None:
        """One ``watch_ohlcv`` (one symbol) or ``watch_ohlcv_for_symbols`` call."""
        what = f"watch_ohlcv {','.join(symbols)} {timeframe}"
        if len(symbols) == 1:
            await self._call(self._exchange.watch_ohlcv(symbols[0], timeframe), what)
        else:
            await self._call(self._exchange.watch_ohlcv_for_symbols(
                [[s, timeframe] for s in symbols]), what)

    def candle_updates(self, symbol: str, timeframe: str) -> CacheRead:
        """Candles (:data:`~candlecast.exchange.source.Candle`) at the end of ccxt's cache that
        are new or changed since the last call, in cache order (arrival of their first
        message)."""
        cache = ((self._exchange.ohlcvs or {}).get(symbol) or {}).get(timeframe)
        if not cache:
            return _NOTHING
        key = (symbol, timeframe)
        seen = self._candles_seen.get(key, {})
        tail = list(islice(reversed(cache), CANDLE_TAIL))
        tail.reverse()
        fresh = [row for row in tail if seen.get(row[0]) != tuple(row[1:6])]
        if not fresh:
            return _NOTHING
        self._candles_seen[key] = {row[0]: tuple(row[1:6]) for row in tail}
        rows: list[Candle] = []
        bad: list[str] = []
        for row in fresh:
            candle = _candle(row)
            if isinstance(candle, str):
                bad.append(f"{symbol}: {candle}")
            else:
                rows.append(candle)
        return CacheRead(rows, tuple(bad))

    def candle_reads(self, symbols: list[str], timeframe: str) -> list[tuple[str, CacheRead]]:
        """:meth:`candle_updates` of every symbol that has any."""
        out = []
        for symbol in symbols:
            read = self.candle_updates(symbol, timeframe)
            if read is not _NOTHING:
                out.append((symbol, read))
        return out

    # ---- trades ----------------------------------------------------------------------------
    async def wait_trades(self, symbols: list[str]) -> None:
        """One ``watch_trades`` (one symbol) or ``watch_trades_for_symbols`` call."""
        what = f"watch_trades {','.join(symbols)}"
        if len(symbols) == 1:
            await self._call(self._exchange.watch_trades(symbols[0]), what)
        else:
            await self._call(self._exchange.watch_trades_for_symbols(symbols), what)

    def trade_updates(self, symbol: str) -> CacheRead:
        """Trades (:data:`StreamTrade`) appended to ccxt's cache of ``symbol`` since the last
        call, in arrival order, duplicates included (the cache keeps what the exchange sent)."""
        cache = (self._exchange.trades or {}).get(symbol)
        if not cache:
            return _NOTHING
        mark = self._trade_marks.get(symbol)
        newest = reversed(cache)
        first = next(newest)
        if first is mark:
            return _NOTHING
        fresh: list[Any] = [first]
        found = mark is None
        for item in newest:
            if item is mark:
                found = True
                break
            fresh.append(item)
        self._trade_marks[symbol] = first
        rows: list[StreamTrade] = []
        bad: list[str] = []
        for item in reversed(fresh):
            trade = _trade(item)
            if isinstance(trade, str):
                bad.append(f"{symbol}: {trade}")
            else:
                rows.append(trade)
        return CacheRead(rows, tuple(bad), overflow=not found)

    def trade_reads(self, symbols: list[str]) -> list[tuple[str, CacheRead]]:
        """:meth:`trade_updates` of every symbol that has any."""
        out = []
        for symbol in symbols:
            read = self.trade_updates(symbol)
            if read is not _NOTHING:
                out.append((symbol, read))
        return out

    # ---- connection ------------------------------------------------------------------------
    async def reconnect(self) -> None:
        """Close every WebSocket connection; the next ``wait_*`` call opens and subscribes anew."""
        try:
            await self._exchange.close_ws_clients()
        except Exception as error:  # noqa: BLE001 - a half-dead socket may fail to close
            raise TransientExchangeError(self.id, "network", f"close: {error!r}") from error

    async def close(self) -> None:
        await self._exchange.close()

    async def _call(self, awaitable: Any, what: str) -> Any:
        try:
            return await awaitable
        except ccxt.BaseError as error:
            raise translate_ccxt_error(self.id, error, what) from error
        except ExchangeRequestError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            raise TransientExchangeError(
                self.id, "malformed", f"{what}: unparseable message ({type(error).__name__}: "
                f"{error})") from error
        except (ConnectionError, OSError) as error:
            raise TransientExchangeError(self.id, "network", f"{what}: {error!r}") from error


def _candle(row: Any) -> Candle | str:
    """The cached row as a candle, or why it is not one (missing values become NaN: the
    builder's checks reject them)."""
    try:
        ts = row[0]
        if not isinstance(ts, int) or isinstance(ts, bool):
            return f"candle {row!r:.80}: timestamp is not an integer of milliseconds"
        values = [math.nan if v is None else float(v) for v in row[1:6]]
        if len(values) < 5:
            return f"candle {row!r:.80}: expected 6 fields"
    except (TypeError, ValueError, IndexError) as error:
        return f"candle {row!r:.80}: {error}"
    return (ts, values[0], values[1], values[2], values[3], values[4])


def _trade(item: Any) -> StreamTrade | str:
    try:
        ts = item["timestamp"]
        if not isinstance(ts, int) or isinstance(ts, bool):
            return f"trade {item.get('id')!r}: timestamp is not an integer of milliseconds"
        price = math.nan if item["price"] is None else float(item["price"])
        amount = math.nan if item["amount"] is None else float(item["amount"])
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        return f"trade {str(item)[:80]}: {error}"
    return (ts, str(item.get("id") or ""), price, amount)
