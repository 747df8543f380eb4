"""Authenticated order calls through ccxt, in candlecast's terms (the live trader's exchange edge).

:class:`CcxtOrderGateway` wraps a *synchronous* ccxt exchange created with API credentials and
exposes exactly what the trader needs: market rules and precision (``amount_to_precision`` /
``price_to_precision``), orders placed with a caller-chosen client order id, look-up of an order
by that id (the basis of "query before resubmitting" after a timeout), open orders, cancels and
balances. Every ccxt failure becomes a :class:`~candlecast.exchange.errors.TransientExchangeError`
(worth retrying: timeouts, 5xx, rate limits, dropped connections) or a
:class:`~candlecast.exchange.errors.PermanentExchangeError`; an order the exchange does not know
is ``None``, not an error. Retrying is the caller's job (it must decide whether a create is safe
to repeat).

Credentials are handed to ccxt and nowhere else: they are not attributes of the gateway and never
appear in its ``repr``; error messages (built from ccxt's, which may quote a server's answer) and
ccxt's own DEBUG log records (which include request headers, i.e. the API key) are masked.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import ccxt

from candlecast.exchange.ccxt_source import create_exchange, parse_retry_after
from candlecast.exchange.errors import (
    ExchangeRequestError,
    OrderWouldTakeError,
    PermanentExchangeError,
    TransientExchangeError,
)

T = TypeVar("T")

#: ccxt order statuses that can still fill
OPEN_STATUSES = frozenset({"open", "new", "partially_filled"})


@dataclass(frozen=True)
class MarketRules:
    """Precision and limits of one market, as ccxt loaded them."""

    symbol: str
    base: str
    quote: str
    amount_step: float | None
    price_step: float | None
    min_amount: float | None
    min_cost: float | None
    taker_fee: float | None  # fraction of notional, per ccxt's market metadata
    maker_fee: float | None = None
    #: the venue takes post-only limit orders for this market (ccxt ``features``: ``PO``)
    post_only: bool = False


@dataclass(frozen=True)
class OrderSnapshot:
    """One order as the exchange reports it.

    ``fee`` is the fee in quote currency when the exchange reported one in quote (else ``None``);
    ``average`` the average fill price (``None`` before any fill).
    """

    client_id: str | None
    exchange_id: str
    symbol: str
    side: str  # "buy" | "sell"
    type: str
    status: str  # ccxt: "open" | "closed" | "canceled" | "expired" | "rejected"
    amount: float
    filled: float
    average: float | None
    cost: float
    fee: float | None
    timestamp_ms: int | None
    price: float | None = None  # a limit order's price
    post_only: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def translate_ccxt_error(
    exchange_id: str,
    error: Exception,
    what: str,
    retry_after_s: float | None = None,
    redact: Callable[[str], str] = str,
) -> ExchangeRequestError:
    """A ccxt exception as a transient or permanent candlecast error (one line; ``redact``
    removes anything secret from the message)."""
    message = redact(f"{what}: {type(error).__name__}: {error}")
    if isinstance(error, ccxt.OrderImmediatelyFillable):
        return OrderWouldTakeError(exchange_id, message)
    if isinstance(error, ccxt.RequestTimeout):
        return TransientExchangeError(exchange_id, "timeout", message)
    if isinstance(error, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return TransientExchangeError(exchange_id, "rate_limit", message, retry_after_s)
    if isinstance(error, ccxt.ExchangeNotAvailable | ccxt.OnMaintenance):
        return TransientExchangeError(exchange_id, "unavailable", message, retry_after_s)
    if isinstance(error, ccxt.NetworkError):
        return TransientExchangeError(exchange_id, "network", message)
    if isinstance(error, ccxt.BadResponse):
        return TransientExchangeError(exchange_id, "malformed", message)
    return PermanentExchangeError(exchange_id, message)


class _RedactingFilter(logging.Filter):
    """Masks registered secrets in log records: ccxt logs request headers (with the API key)
    at DEBUG level, so a user who turns on debug logging must not see them."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            masked = text
            for secret in self.secrets:
                masked = masked.replace(secret, "***")
            if masked != text:
                record.msg, record.args = masked, ()
        return True


_LOG_FILTER = _RedactingFilter()
_CCXT_LOGGERS = ("ccxt", "ccxt.base.exchange", "urllib3.connectionpool")


def _register_secrets(*secrets: str) -> None:
    """Mask ``secrets`` in every record of ccxt's (and urllib3's) loggers from now on."""
    _LOG_FILTER.secrets.update(s for s in secrets if s)
    for name in _CCXT_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


def _redactor(secrets: tuple[str, ...]) -> Callable[[str], str]:
    """A function that masks every occurrence of ``secrets`` in a text."""
    words = tuple(s for s in secrets if s)

    def redact(text: str) -> str:
        for word in words:
            text = text.replace(word, "***")
        return text

    return redact


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


class CcxtOrderGateway:
    """Orders, balances and market rules of one ccxt exchange (sync client)."""

    def __init__(self, exchange: Any, redact: Callable[[str], str] = str) -> None:
        self._exchange = exchange
        self._redact = redact
        self.id: str = exchange.id

    # the keyword arguments of ``create_exchange`` plus the credentials: a deliberate mirror
    # (they are passed through to it)
    @classmethod
    def create(
        cls,
        exchange_id: str,
        *,
        api_key: str,
        api_secret: str,
        timeout_ms: int = 10_000,
        rate_limit_ms: int | None = None,
        api_url: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> CcxtOrderGateway:
        """A gateway on a fresh ccxt exchange holding the credentials (and nothing else does)."""
        if not api_key or not api_secret:
            raise ValueError(f"{exchange_id}: live orders need a non-empty API key and secret")
        exchange = create_exchange(
            exchange_id, timeout_ms=timeout_ms, rate_limit_ms=rate_limit_ms, api_url=api_url,
            options=options,
        )
        _register_secrets(api_key, api_secret)
        exchange.apiKey = api_key
        exchange.secret = api_secret
        return cls(exchange, _redactor((api_key, api_secret)))

    def __repr__(self) -> str:  # no config dump: the exchange object holds the credentials
        return f"CcxtOrderGateway({self.id!r})"

    # ---- markets ---------------------------------------------------------------------------
    def load_markets(self) -> None:
        self._call(lambda: self._exchange.load_markets(), "load_markets")

    def rules(self, symbol: str) -> MarketRules:
        """Precision and limits of ``symbol`` (call :meth:`load_markets` first)."""
        market = (self._exchange.markets or {}).get(symbol)
        if market is None:
            raise PermanentExchangeError(self.id, f"unknown market {symbol!r}")
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        return MarketRules(
            symbol=symbol,
            base=str(market.get("base")),
            quote=str(market.get("quote")),
            amount_step=_float(precision.get("amount")),
            price_step=_float(precision.get("price")),
            min_amount=_float((limits.get("amount") or {}).get("min")),
            min_cost=_float((limits.get("cost") or {}).get("min")),
            taker_fee=_float(market.get("taker")),
            maker_fee=_float(market.get("maker")),
            post_only=self._post_only_supported(market),
        )

    def _post_only_supported(self, market: Mapping[str, Any]) -> bool:
        """Whether ccxt's feature table says the venue takes post-only (``timeInForce: PO``)
        orders for this kind of market (spot, or linear/inverse swaps and futures)."""
        features = getattr(self._exchange, "features", None) or {}
        kind = str(market.get("type") or "spot")
        node = features.get(kind) or {}
        if kind in ("swap", "future"):
            node = node.get("linear" if market.get("linear") else "inverse") or {}
        create = (node.get("createOrder") or {}) if isinstance(node, Mapping) else {}
        return bool((create.get("timeInForce") or {}).get("PO"))

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        """``amount`` truncated to the market's amount precision; 0.0 when it truncates to 0."""
        try:
            return float(self._exchange.amount_to_precision(symbol, amount))
        except ccxt.InvalidOrder:
            return 0.0
        except ccxt.BaseError as error:
            raise self._error(error, f"amount_to_precision {symbol}") from error

    def price_to_precision(self, symbol: str, price: float) -> float:
        try:
            return float(self._exchange.price_to_precision(symbol, price))
        except ccxt.BaseError as error:
            raise self._error(error, f"price_to_precision {symbol}") from error

    # ---- orders ----------------------------------------------------------------------------
    def create_order(
        self,
        symbol: str,
        side: str,
        amount: float,
        client_id: str,
        *,
        order_type: str = "market",
        price: float | None = None,
        post_only: bool = False,
    ) -> OrderSnapshot:
        """Place one order tagged with ``client_id``: ``market``, or ``limit`` at ``price``
        (``post_only``: ccxt's unified ``postOnly``, e.g. Binance spot ``LIMIT_MAKER``; refused
        with :class:`OrderWouldTakeError` if it would trade at once). A TransientExchangeError
        means the outcome is UNKNOWN (the exchange may have accepted it): look it up with
        :meth:`fetch_order_by_client_id` before placing it again."""
        if side not in ("buy", "sell"):
            raise ValueError(f"order side must be 'buy' or 'sell', got {side!r}")
        if order_type not in ("market", "limit"):
            raise ValueError(f"order type must be 'market' or 'limit', got {order_type!r}")
        if order_type == "limit" and not (price is not None and price > 0):
            raise ValueError(f"a limit order needs a positive price, got {price!r}")
        if post_only and order_type != "limit":
            raise ValueError("only limit orders can be post-only")
        params: dict[str, Any] = {"clientOrderId": client_id}
        if post_only:
            params["postOnly"] = True
        what = (f"create_order {symbol} {order_type}{' post-only' if post_only else ''} {side} "
                f"{amount}{'' if price is None else f' @ {price}'} client_id={client_id}")
        raw = self._call(
            lambda: self._exchange.create_order(
                symbol, order_type, side, amount, price if order_type == "limit" else None,
                params,
            ),
            what,
        )
        return self._snapshot(raw, symbol, client_id)

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderSnapshot | None:
        """The order placed with ``client_id``, or ``None`` if the exchange has no such order."""
        what = f"fetch_order {symbol} client_id={client_id}"
        try:
            raw = self._exchange.fetch_order(None, symbol, {"clientOrderId": client_id})
        except ccxt.OrderNotFound:
            return None
        except ccxt.BaseError as error:
            raise self._error(error, what) from error
        return self._snapshot(raw, symbol, client_id)

    def fetch_open_orders(self, symbol: str) -> list[OrderSnapshot]:
        raws = self._call(lambda: self._exchange.fetch_open_orders(symbol), f"open orders {symbol}")
        return [self._snapshot(raw, symbol, None) for raw in raws]

    def cancel_order(self, symbol: str, exchange_id: str) -> bool:
        """Cancel an order; ``False`` when the exchange no longer knows it (already done)."""
        try:
            self._exchange.cancel_order(exchange_id, symbol)
        except ccxt.OrderNotFound:
            return False
        except ccxt.BaseError as error:
            what = f"cancel_order {symbol} {exchange_id}"
            raise self._error(error, what) from error
        return True

    def fetch_balances(self) -> dict[str, tuple[float, float, float]]:
        """``{currency: (free, used, total)}`` for every currency with a non-zero total."""
        raw = self._call(lambda: self._exchange.fetch_balance(), "fetch_balance")
        out: dict[str, tuple[float, float, float]] = {}
        for code, entry in raw.items():
            if not isinstance(entry, dict) or "total" not in entry:
                continue
            total = _float(entry.get("total")) or 0.0
            if total != 0.0:
                out[str(code)] = (_float(entry.get("free")) or 0.0,
                                  _float(entry.get("used")) or 0.0, total)
        return out

    # ---- helpers ---------------------------------------------------------------------------
    def _snapshot(
        self, raw: Mapping[str, Any], symbol: str, client_id: str | None
    ) -> OrderSnapshot:
        try:
            quote = str(self._exchange.markets[symbol]["quote"])
        except (KeyError, TypeError):
            quote = ""
        fee: float | None = None
        fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
        if fees:
            costs = [(_float(f.get("cost")), f.get("currency")) for f in fees if f]
            if costs and all(c is not None and cur == quote for c, cur in costs):
                fee = float(sum(c for c, _ in costs if c is not None))
        filled = _float(raw.get("filled")) or 0.0
        average = _float(raw.get("average"))
        cost = _float(raw.get("cost"))
        if cost is None:
            cost = filled * average if average is not None else 0.0
        if average is None and filled > 0 and cost > 0:
            average = cost / filled
        return OrderSnapshot(
            client_id=raw.get("clientOrderId") or client_id,
            exchange_id=str(raw.get("id")),
            symbol=str(raw.get("symbol") or symbol),
            side=str(raw.get("side")),
            type=str(raw.get("type")),
            status=str(raw.get("status")),
            amount=_float(raw.get("amount")) or 0.0,
            filled=filled,
            average=average,
            cost=cost,
            fee=fee,
            timestamp_ms=raw.get("timestamp"),
            price=_float(raw.get("price")) or None,
            post_only=bool(raw.get("postOnly")),
        )

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except ccxt.BaseError as error:
            raise self._error(error, what) from error

    def _error(self, error: Exception, what: str) -> ExchangeRequestError:
        return translate_ccxt_error(self.id, error, what, self._retry_after(), self._redact)

    def _retry_after(self) -> float | None:
        headers = getattr(self._exchange, "last_response_headers", None) or {}
        for key, value in dict(headers).items():
            if str(key).lower() == "retry-after":
                return parse_retry_after(value, time.time())
        return None
