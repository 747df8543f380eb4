"""A small fake of Binance's public spot REST API, served on 127.0.0.1 for ccxt tests.

It serves exactly what ``ccxt.binance`` needs for ``load_markets`` and ``fetch_ohlcv``:

- ``GET /api/v3/exchangeInfo`` (spot markets), ``/fapi/v1/exchangeInfo`` and
  ``/dapi/v1/exchangeInfo`` (empty: no derivatives),
- ``GET /api/v3/klines?symbol&interval&startTime&endTime&limit`` with Binance's semantics
  (candles with open time >= startTime, ascending, at most ``limit`` and never more than the
  fake's ``max_limit``; without startTime the most recent candles).

Candles are deterministic and random-access: candle ``i`` of a market is a function of the market
id and ``i`` only, so a test can compute the expected table independently with
:meth:`FakeBinance.expected`. The fake has its own clock ``now_ms``; it serves every candle whose
open time is <= now, so the last one served is the still-open candle.

Faults are injected per klines request number (0-based, counted over all klines requests):
``timeout`` (sleep longer than the client's timeout, then answer), ``http`` (a status such as 429
with optional ``Retry-After``, or 500/502/503), ``malformed`` (a 200 with truncated JSON),
``duplicate`` (the previous klines response served again), ``hang`` (block until released; for
kill tests). Every request is logged in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd

TIMEFRAME_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
# Spot markets served: exchange id -> (base, quote).
DEFAULT_MARKETS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}
DEFAULT_LISTING_MS = int(pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000)


@dataclass
class Fault:
    """What to do instead of (or before) answering one klines request."""

    kind: str  # "timeout" | "http" | "malformed" | "duplicate" | "hang"
    status: int = 500
    retry_after: str | None = None
    delay_s: float = 1.0


@dataclass
class LoggedRequest:
    path: str
    params: dict[str, str]
    status: int
    fault: str | None = None


@dataclass
class FakeBinance:
    """Deterministic candle history plus fault plan; serve it with :func:`serve`."""

    now_ms: int
    listing_ms: int = DEFAULT_LISTING_MS
    max_limit: int = 100
    markets: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(DEFAULT_MARKETS))
    holes: frozenset[int] = frozenset()  # candle indices the exchange never had
    faults: dict[int, Fault] = field(default_factory=dict)
    requests: list[LoggedRequest] = field(default_factory=list)
    klines_served: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_klines_body: bytes | None = None

    # ---- the deterministic history -------------------------------------------------------
    @staticmethod
    def candle(market_id: str, index: int, open_ms: int) -> list[Any]:
        """Binance kline row for candle ``index`` (prices with 2 decimals, as strings)."""
        digest = hashlib.sha256(f"{market_id}:{index}".encode()).digest()
        noise = [b / 255.0 for b in digest[:4]]
        base = 100.0 if market_id.startswith("ETH") else 1000.0
        level = base * (1.0 + 0.2 * math.sin(index / 97.0) + 0.05 * math.sin(index / 7.3))
        open_ = round(level * (1 + (noise[0] - 0.5) * 0.01), 2)
        close = round(level * (1 + (noise[1] - 0.5) * 0.01), 2)
        high = round(max(open_, close) * (1 + noise[2] * 0.005), 2)
        low = round(min(open_, close) * (1 - noise[3] * 0.005), 2)
        volume = round(1 + digest[4] + digest[5] / 256.0, 4)
        return [
            open_ms,
            f"{open_:.2f}",
            f"{high:.2f}",
            f"{low:.2f}",
            f"{close:.2f}",
            f"{volume:.4f}",
            open_ms + 1,
            "0",
            1,
            "0",
            "0",
            "0",
        ]

    def rows(
        self, market_id: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[list[Any]]:
        step = TIMEFRAME_MS[interval]
        last = (self.now_ms - self.listing_ms) // step  # index of the still-open candle
        if start_ms is None:
            first = max(0, last - limit + 1)
        else:
            first = max(0, -(-(start_ms - self.listing_ms) // step))
        out = []
        i = first
        while i <= last and len(out) < limit:
            open_ms = self.listing_ms + i * step
            if end_ms is not None and open_ms > end_ms:
                break
            if i not in self.holes:
                out.append(self.candle(market_id, i, open_ms))
            i += 1
        return out

    def expected(
        self,
        symbol: str,
        timeframe: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        exchange: str = "binance",
    ) -> pd.DataFrame:
        """The canonical candle table a correct ingest stores for ``[start, end)`` (closed only)."""
        market_id = symbol.replace("/", "")
        step = TIMEFRAME_MS[timeframe]
        start_ms, end_ms = int(start.value // 1_000_000), int(end.value // 1_000_000)
        records = []
        i = max(0, -(-(start_ms - self.listing_ms) // step))
        while True:
            open_ms = self.listing_ms + i * step
            if open_ms >= end_ms or open_ms + step > self.now_ms:
                break
            if i not in self.holes:
                r = self.candle(market_id, i, open_ms)
                records.append(
                    [pd.Timestamp(open_ms, unit="ms", tz="UTC"), *(float(x) for x in r[1:6])]
                )
            i += 1
        frame = pd.DataFrame(
            records, columns=["timestamp", "open", "high", "low", "close", "volume"]
        )
        frame["exchange"], frame["symbol"], frame["timeframe"] = exchange, symbol, timeframe
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        return frame

    def klines_requests(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path.endswith("/klines")]

    # ---- the HTTP answers -------------------------------------------------------------------
    def exchange_info(self) -> dict[str, Any]:
        symbols = [
            {
                "symbol": market_id,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "permissions": ["SPOT"],
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.01",
                        "maxPrice": "1000000.00",
                        "tickSize": "0.01",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.00001",
                        "maxQty": "9000.0",
                        "stepSize": "0.00001",
                    },
                ],
            }
            for market_id, (base, quote) in self.markets.items()
        ]
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeBinance  # set on the subclass made by serve()

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms
        # to every response on keep-alive connections.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        return

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json;charset=UTF-8",
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        fake = self.fake
        split = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        path = split.path
        if path.endswith("/exchangeInfo"):
            info = fake.exchange_info() if path.startswith("/api/") else {"symbols": []}
            self._log(path, params, 200)
            self._send(200, json.dumps(info).encode())
        elif path == "/api/v3/klines":
            self._klines(path, params)
        else:
            self._log(path, params, 404)
            self._send(404, b'{"code":-1,"msg":"not found"}')

    def _log(
        self, path: str, params: dict[str, str], status: int, fault: str | None = None
    ) -> None:
        with self.fake._lock:
            self.fake.requests.append(LoggedRequest(path, params, status, fault))

    def _klines(self, path: str, params: dict[str, str]) -> None:
        fake = self.fake
        with fake._lock:
            number = fake.klines_served
            fake.klines_served += 1
            fault = fake.faults.get(number)
            previous = fake._last_klines_body
        if fault is not None and fault.kind == "hang":
            self._log(path, params, 0, "hang")
            fake.release.wait(60)
            return
        if fault is not None and fault.kind == "timeout":
            self._log(path, params, 0, "timeout")
            time.sleep(fault.delay_s)
            self._send(200, b"[]")
            return
        if fault is not None and fault.kind == "http":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._log(path, params, fault.status, "http")
            if fault.status >= 500:  # gateways answer 5xx with HTML, not Binance JSON
                body = f"<html><body>{fault.status} Server Error</body></html>".encode()
                self._send(fault.status, body, headers, "text/html")
            else:
                self._send(fault.status, b'{"code":-1003,"msg":"Too many requests."}', headers)
            return
        if fault is not None and fault.kind == "malformed":
            self._log(path, params, 200, "malformed")
            self._send(200, b'[[1704067200000,"1000.00","10')
            return
        if fault is not None and fault.kind == "duplicate" and previous is not None:
            self._log(path, params, 200, "duplicate")
            self._send(200, previous)
            return
        market_id = params.get("symbol", "")
        interval = params.get("interval", "")
        if market_id not in fake.markets or interval not in TIMEFRAME_MS:
            self._log(path, params, 400)
            self._send(400, b'{"code":-1121,"msg":"Invalid symbol."}')
            return
        limit = min(int(params.get("limit", 500)), fake.max_limit)
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
        body = json.dumps(fake.rows(market_id, interval, start, end, limit)).encode()
        with fake._lock:
            fake._last_klines_body = body
        self._log(path, params, 200)
        self._send(200, body)


class FakeServer:
    """A running fake on 127.0.0.1; use as a context manager. ``url`` is the base URL."""

    def __init__(self, fake: FakeBinance) -> None:
        self.fake = fake
        handler = type("BoundHandler", (_Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def serve(fake: FakeBinance) -> FakeServer:
    return FakeServer(fake)
