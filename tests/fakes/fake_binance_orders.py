"""A fake of Binance's spot REST API *with* the private order endpoints, for the live-trader tests.

It extends :class:`fake_binance.FakeBinance` (public ``exchangeInfo`` and ``klines``, unchanged)
with what ``ccxt.binance`` calls for trading:

- ``POST /api/v3/order``: MARKET fills at once at the open of the still-forming candle (the
  market price); LIMIT rests as ``NEW`` (or, if it crosses the market price, fills at once as a
  taker); LIMIT_MAKER (what ccxt sends for a spot order with ``postOnly``) rests, or is refused
  with ``-2010`` "Order would immediately match and take." when it would cross. A resting
  order fills at its price, with the maker fee, on a candle (from the one forming when it was
  placed, once that candle has closed) whose range trades THROUGH the price (a buy needs
  ``low < price``), at most ``fill_participation`` of the candle's volume per candle
  (``PARTIALLY_FILLED`` in between). A ``newClientOrderId`` already used is refused with
  ``-2010`` "Duplicate order sent." (as Binance does for a live order id);
- ``GET /api/v3/order`` by ``origClientOrderId`` or ``orderId`` (``-2013`` "Order does not
  exist."),
- ``GET /api/v3/openOrders``, ``DELETE /api/v3/order``, ``GET /api/v3/account`` (balances).

Signed requests must carry the ``X-MBX-APIKEY`` header equal to ``api_key`` (the signature is not
checked); a wrong key gets a 401 whose message echoes the key (as some exchanges do), so tests can
check that candlecast masks it. Balances move with every fill: a buy pays ``qty * price`` plus a
taker fee in the quote asset, a sell receives ``qty * price`` minus the fee; an order the balance
cannot cover is refused (``-2010`` "Account has insufficient balance for requested action.").

Faults are injected per order-creation request (0-based count of ``POST /api/v3/order``):

- ``accept_then_timeout``: the order is accepted and filled, then the answer is delayed beyond the
  client's timeout (the outcome is unknown to the client: the dangerous case);
- ``timeout_before_accept``: the request is dropped: delayed, then answered 503, nothing booked;
- ``http``: an error status (e.g. 503 HTML or 429) and nothing booked.

``query_faults`` do the same for ``GET /api/v3/order`` (``http`` / ``timeout`` only).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_binance import TIMEFRAME_MS, FakeBinance, FakeServer, _Handler

LOT = 0.00001  # the fake markets' amount step (LOT_SIZE stepSize): partial fills are on it


@dataclass
class OrderFault:
    kind: str  # "accept_then_timeout" | "timeout_before_accept" | "http" | "timeout"
    status: int = 503
    delay_s: float = 1.0


@dataclass
class FakeBinanceOrders(FakeBinance):
    """FakeBinance plus accounts and orders. ``price_interval`` picks the candles whose open is
    the market-order fill price."""

    api_key: str = "test-key"
    balances: dict[str, float] = field(default_factory=lambda: {"USDT": 10_000.0})
    taker_fee: float = 0.001
    maker_fee: float = 0.001  # Binance spot's base rate; ccxt's market metadata says the same
    fill_participation: float | None = None  # resting orders: max share of a candle's volume
    price_interval: str = "1h"
    order_faults: dict[int, OrderFault] = field(default_factory=dict)
    query_faults: dict[int, OrderFault] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    order_posts: int = 0
    order_queries: int = 0
    seen_api_keys: set[str] = field(default_factory=set)
    executions: list[dict[str, Any]] = field(default_factory=list)  # every (partial) fill

    # ---- state -------------------------------------------------------------------------------
    def market_price(self, market_id: str) -> float:
        """The open of the candle forming at ``now_ms`` (what a market order pays, pre-fee)."""
        step = TIMEFRAME_MS[self.price_interval]
        index = (self.now_ms - self.listing_ms) // step
        return float(self.candle(market_id, index, self.listing_ms + index * step)[1])

    def find(self, market_id: str, client_id: str | None, order_id: str | None) -> dict | None:
        for order in self.orders:
            if order["symbol"] != market_id:
                continue
            if client_id is not None and order["clientOrderId"] == client_id:
                return order
            if order_id is not None and str(order["orderId"]) == str(order_id):
                return order
        return None

    def exchange_info(self) -> dict[str, Any]:
        info = super().exchange_info()
        for market in info["symbols"]:
            market["orderTypes"] = ["LIMIT", "LIMIT_MAKER", "MARKET"]
        return info

    def _insufficient(self, base: str, quote: str, side: str, qty: float, price: float,
                      fee_rate: float) -> bool:
        if side == "BUY":
            return self.balances.get(quote, 0.0) < qty * price * (1 + fee_rate) - 1e-9
        return self.balances.get(base, 0.0) < qty - 1e-12

    def _execute(self, order: dict[str, Any], qty: float, price: float, maker: bool) -> None:
        """Book one (partial) fill of ``order`` and move the balances."""
        base, quote = self.markets[order["symbol"]]
        notional = qty * price
        fee = notional * (self.maker_fee if maker else self.taker_fee)
        sign = 1.0 if order["side"] == "BUY" else -1.0
        self.balances[base] = self.balances.get(base, 0.0) + sign * qty
        self.balances[quote] = self.balances.get(quote, 0.0) - sign * notional - fee
        executed = float(order["executedQty"]) + qty
        order["executedQty"] = f"{executed:.8f}"
        order["cummulativeQuoteQty"] = f"{float(order['cummulativeQuoteQty']) + notional:.8f}"
        done = executed >= float(order["origQty"]) - 1e-12
        order["status"] = "FILLED" if done else "PARTIALLY_FILLED"
        order["updateTime"] = self.now_ms
        fill = {"price": f"{price:.8f}", "qty": f"{qty:.8f}", "commission": f"{fee:.8f}",
                "commissionAsset": quote, "tradeId": len(self.executions) + 1}
        order["fills"].append(fill)
        self.executions.append({"clientOrderId": order["clientOrderId"], "side": order["side"],
                                "qty": qty, "price": price, "fee": fee, "maker": maker,
                                "time": self.now_ms})

    def match_resting(self) -> None:
        """Fill resting limit orders on the candles closed since they were last looked at
        (caller holds the lock)."""
        step = TIMEFRAME_MS[self.price_interval]
        forming = (self.now_ms - self.listing_ms) // step
        for order in self.orders:
            if order["status"] not in ("NEW", "PARTIALLY_FILLED") or order["type"] == "MARKET":
                continue
            price = float(order["price"])
            while order["_next"] < forming and order["status"] != "FILLED":
                i = order["_next"]
                order["_next"] += 1
                row = self.candle(order["symbol"], i, self.listing_ms + i * step)
                high, low, volume = float(row[2]), float(row[3]), float(row[5])
                if not (low < price if order["side"] == "BUY" else high > price):
                    continue
                rest = float(order["origQty"]) - float(order["executedQty"])
                qty = rest if self.fill_participation is None else min(
                    rest, math.floor(self.fill_participation * volume / LOT) * LOT)
                if qty > 0:
                    self._execute(order, qty, price, maker=True)

    def place(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Book an order (caller holds the lock); returns (HTTP status, body)."""
        market_id = params.get("symbol", "")
        if market_id not in self.markets:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        client_id = params.get("newClientOrderId") or f"auto{len(self.orders) + 1}"
        if self.find(market_id, client_id, None) is not None:
            return 400, {"code": -2010, "msg": "Duplicate order sent."}
        side, kind = params.get("side", ""), params.get("type", "")
        qty = float(params.get("quantity", "0"))
        limit = kind in ("LIMIT", "LIMIT_MAKER")
        price = float(params.get("price", "0")) if limit else 0.0
        if (qty <= 0 or side not in ("BUY", "SELL") or kind not in ("MARKET", "LIMIT",
                                                                      "LIMIT_MAKER")
                or (limit and price <= 0)):
            return 400, {"code": -1102, "msg": "Mandatory parameter was not sent or malformed."}
        base, quote = self.markets[market_id]
        market = self.market_price(market_id)
        crosses = limit and (price >= market if side == "BUY" else price <= market)
        if kind == "LIMIT_MAKER" and crosses:
            return 400, {"code": -2010, "msg": "Order would immediately match and take."}
        taker = kind == "MARKET" or crosses
        if self._insufficient(base, quote, side, qty, market if taker else price,
                              self.taker_fee if taker else self.maker_fee):
            return 400, {"code": -2010,
                         "msg": "Account has insufficient balance for requested action."}
        step = TIMEFRAME_MS[self.price_interval]
        order: dict[str, Any] = {
            "symbol": market_id, "orderId": len(self.orders) + 1, "orderListId": -1,
            "clientOrderId": client_id, "transactTime": self.now_ms, "time": self.now_ms,
            "updateTime": self.now_ms, "price": f"{price:.8f}",
            "origQty": f"{qty:.8f}", "executedQty": "0.00000000",
            "cummulativeQuoteQty": "0.00000000", "status": "NEW", "timeInForce": "GTC",
            "type": kind, "side": side, "fills": [],
            "_next": (self.now_ms - self.listing_ms) // step,  # first candle it may fill on
        }
        self.orders.append(order)
        if taker:
            self._execute(order, qty, market, maker=False)
        return 200, self.post_view(order)

    @staticmethod
    def post_view(order: dict[str, Any]) -> dict[str, Any]:
        """An order as POST /api/v3/order returns it (with its ``fills``)."""
        return {k: v for k, v in order.items() if not k.startswith("_")}

    @staticmethod
    def public_view(order: dict[str, Any]) -> dict[str, Any]:
        """An order as GET /api/v3/order returns it (no ``fills``)."""
        return {k: v for k, v in order.items() if k != "fills" and not k.startswith("_")}

    def account(self) -> dict[str, Any]:
        locked: dict[str, float] = {}
        return {
            "makerCommission": 10, "takerCommission": 10, "canTrade": True,
            "updateTime": self.now_ms, "accountType": "SPOT", "permissions": ["SPOT"],
            "balances": [
                {"asset": a, "free": f"{v - locked.get(a, 0.0):.8f}",
                 "locked": f"{locked.get(a, 0.0):.8f}"}
                for a, v in sorted(self.balances.items())
            ],
        }

    def filled_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["status"] == "FILLED"]

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """Orders of type ``kind`` (MARKET, LIMIT, LIMIT_MAKER) the fake accepted."""
        return [o for o in self.orders if o["type"] == kind]


class _OrderHandler(_Handler):
    fake: FakeBinanceOrders

    def _params(self) -> tuple[str, dict[str, str]]:
        split = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length).decode()
            params.update({k: v[-1] for k, v in parse_qs(body).items()})
        return split.path, params

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _authorized(self, path: str, params: dict[str, str]) -> bool:
        key = self.headers.get("X-MBX-APIKEY")
        with self.fake._lock:
            if key:
                self.fake.seen_api_keys.add(key)
        if key != self.fake.api_key:  # echoes the key, as some exchanges do (redaction test)
            self._log(path, params, 401)
            self._json(401, {"code": -2015, "msg": f"Invalid API-key {key}, IP, or permissions."})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        path = urlsplit(self.path).path
        if path not in ("/api/v3/order", "/api/v3/openOrders", "/api/v3/account"):
            super().do_GET()
            return
        path, params = self._params()
        if not self._authorized(path, params):
            return
        fake = self.fake
        with fake._lock:
            fake.match_resting()
        if path == "/api/v3/account":
            with fake._lock:
                body = fake.account()
            self._log(path, params, 200)
            self._json(200, body)
            return
        if path == "/api/v3/openOrders":
            with fake._lock:
                body = [fake.public_view(o) for o in fake.orders
                        if o["symbol"] == params.get("symbol")
                        and o["status"] in ("NEW", "PARTIALLY_FILLED")]
            self._log(path, params, 200)
            self._json(200, body)
            return
        with fake._lock:
            number = fake.order_queries
            fake.order_queries += 1
            fault = fake.query_faults.get(number)
            order = fake.find(params.get("symbol", ""), params.get("origClientOrderId"),
                              params.get("orderId"))
            body = None if order is None else fake.public_view(order)
        if fault is not None:
            self._log(path, params, fault.status, fault.kind)
            if fault.kind == "timeout":
                time.sleep(fault.delay_s)
            self._send(fault.status, b"<html>gateway error</html>", content_type="text/html")
            return
        if body is None:
            self._log(path, params, 400)
            self._json(400, {"code": -2013, "msg": "Order does not exist."})
            return
        self._log(path, params, 200)
        self._json(200, body)

    def do_POST(self) -> None:  # noqa: N802
        path, params = self._params()
        if path != "/api/v3/order":
            self._log(path, params, 404)
            self._json(404, {"code": -1, "msg": "not found"})
            return
        if not self._authorized(path, params):
            return
        fake = self.fake
        with fake._lock:
            fake.match_resting()
            number = fake.order_posts
            fake.order_posts += 1
            fault = fake.order_faults.get(number)
            if fault is None or fault.kind == "accept_then_timeout":
                status, body = fake.place(params)
        if fault is not None and fault.kind in ("timeout_before_accept", "http"):
            self._log(path, params, fault.status, fault.kind)
            if fault.kind == "timeout_before_accept":
                time.sleep(fault.delay_s)
            self._send(fault.status, b"<html>503 Service Unavailable</html>",
                       content_type="text/html")
            return
        if fault is not None:  # accepted, then too slow to answer
            self._log(path, params, status, fault.kind)
            time.sleep(fault.delay_s)
        else:
            self._log(path, params, status)
        self._json(status, body)

    def do_DELETE(self) -> None:  # noqa: N802
        path, params = self._params()
        if path != "/api/v3/order":
            self._log(path, params, 404)
            self._json(404, {"code": -1, "msg": "not found"})
            return
        if not self._authorized(path, params):
            return
        fake = self.fake
        with fake._lock:
            fake.match_resting()
            order = fake.find(params.get("symbol", ""), params.get("origClientOrderId"),
                              params.get("orderId"))
            if order is not None and order["status"] in ("NEW", "PARTIALLY_FILLED"):
                order["status"] = "CANCELED"
                body: dict[str, Any] | None = fake.public_view(order)
            else:
                body = None
        if body is None:
            self._log(path, params, 400)
            self._json(400, {"code": -2011, "msg": "Unknown order sent."})
            return
        self._log(path, params, 200)
        self._json(200, body)


class FakeOrdersServer(FakeServer):
    """A running :class:`FakeBinanceOrders` on 127.0.0.1 (context manager; ``url``)."""

    def __init__(self, fake: FakeBinanceOrders) -> None:
        self.fake = fake
        handler = type("BoundOrderHandler", (_OrderHandler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )


#: ccxt options that keep ``ccxt.binance`` on the spot endpoints the fake serves
CCXT_SPOT_OPTIONS = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
}
