"""Live execution through ccxt (via :class:`candlecast.exchange.orders.CcxtOrderGateway`).

* **Precision**: amounts go through the exchange's ``amount_to_precision`` (truncation), limit
  prices through ``price_to_precision``; orders below the market's minimum amount or cost are
  skipped and reported, never rounded up.
* **Execution styles**: a market order, or a passive limit order at the decision's price, sent
  **post-only** (ccxt's unified ``postOnly``; Binance spot: ``LIMIT_MAKER``) where ccxt's
  feature table says the venue takes them, else a plain GTC limit. A post-only order the venue
  refuses because it would take (the price already moved through it) is reported
  (``post_only_rejected``) and dropped: the next candle's policy decides again. The trader
  cancels a limit order still open on its last candle (or replaces its rest by a market order,
  ``on_expire: market``); its fills are booked with the maker fee.
* **Idempotent ids**: every order carries the trader's deterministic client order id
  (:func:`~candlecast.trading.book.client_order_id`).
* **No duplicate after an unknown outcome**: when a create times out (or fails transiently) the
  order may exist. The broker asks the exchange for the client id before trying again: found ->
  that is the order; "no such order" -> safe to send again; the look-up itself failing ->
  status ``unknown``, nothing is re-sent, and the next candle (or the next start) asks again.
* **Fills** are read from the order (filled amount, cost, fee) at the next candle, so they are
  booked at the open of the bar after the decision, as in the backtester.
* **Soft stops**: a resting stop/target the risk engine sees touched is closed with a market
  order at the end of that candle (no exchange-side stop orders yet).
* **Reconciliation** at start-up: working orders are looked up by client id (sent if they never
  were) and their fills booked, orphaned orders with our id prefix are cancelled, foreign orders
  are reported and left alone; then the balances are compared with (and become) the ledger.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from candlecast.backtest.config import CostConfig
from candlecast.backtest.costs import CostModel
from candlecast.exchange.errors import (
    OrderWouldTakeError,
    PermanentExchangeError,
    TransientExchangeError,
)
from candlecast.exchange.retry import BackoffPolicy
from candlecast.trading.book import Fill, SymbolBook, order_id_prefix
from candlecast.trading.broker import SubmitReport
from candlecast.trading.candles import Bar

log = logging.getLogger(__name__)
_UNKNOWN = object()
_WOULD_TAKE = object()
_NOT_SENT = frozenset({"", "new", "skipped", "failed", "rejected"})
_DONE = frozenset({"closed", "canceled", "cancelled", "expired", "rejected", "skipped", "failed"})


@dataclass(frozen=True)
class LiveSnapshot:
    """What the exchange says at start-up: quote cash, base position per symbol, notes."""

    cash: float
    positions: dict[str, float]
    notes: list[str] = field(default_factory=list)


class CcxtBroker:
    """:class:`~candlecast.trading.broker.Broker` on a real exchange (spot: long-only)."""

    name = "ccxt"
    live = True

    def __init__(
        self,
        gateway: Any,
        costs: CostConfig | None = None,
        *,
        strategy_id: str = "candlecast",
        policy: BackoffPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.gateway = gateway
        self.model = CostModel(costs)
        self.prefix = order_id_prefix(strategy_id)
        self.policy = policy if policy is not None else BackoffPolicy(3, 0.5, 10.0)
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()
        self.on_event = on_event or (lambda kind, message: None)
        self.rules: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"CcxtBroker({self.gateway!r})"

    def _event(self, kind: str, message: str) -> None:
        log.warning("%s: %s", kind, message)
        self.on_event(kind, message)

    # ---- start-up --------------------------------------------------------------------------
    def start(self, symbols: list[str]) -> None:
        self._retry(self.gateway.load_markets, "load_markets")
        self.rules = {s: self.gateway.rules(s) for s in symbols}

    def reconcile(self, books: dict[str, SymbolBook]) -> list[str]:
        """Resolve each stored working order by its client id (send it if it never reached the
        exchange), cancel orphaned orders with our id prefix, report foreign ones."""
        notes: list[str] = []
        for symbol, book in books.items():
            open_orders = self._retry(functools.partial(self.gateway.fetch_open_orders, symbol),
                                      f"open orders {symbol}")
            for order in open_orders:
                ours = bool(order.client_id) and str(order.client_id).startswith(self.prefix)
                if order.client_id == book.order_id and book.pending:
                    continue
                if ours:
                    self._retry(functools.partial(self.gateway.cancel_order, order.symbol,
                                                  order.exchange_id),
                                f"cancel {order.exchange_id}")
                    notes.append(f"{symbol}: cancelled orphaned order {order.client_id}")
                else:
                    notes.append(f"{symbol}: foreign open order {order.exchange_id} left alone")
            if book.pending and book.order_status in ("new", "unknown"):
                snap = self._lookup(symbol, book.order_id)
                if snap is _UNKNOWN:
                    notes.append(f"{symbol}: order {book.order_id} still unknown")
                elif snap is None:
                    report = self.submit(book, book.last_close)
                    notes.append(f"{symbol}: order {book.order_id} was never placed; sent now "
                                 f"({report.status})")
                else:
                    book.order_status, book.order_exchange_id = snap.status, snap.exchange_id
                    notes.append(f"{symbol}: order {book.order_id} found ({snap.status})")
        for note in notes:
            self._event("reconcile", note)
        return notes

    def account(self, symbols: list[str]) -> LiveSnapshot:
        """Quote cash and each symbol's base balance (its position: spot, one account)."""
        balances = self._retry(self.gateway.fetch_balances, "fetch_balance")
        quotes = {self.rules[s].quote for s in symbols}
        if len(quotes) != 1:
            raise ValueError(f"live symbols must share one quote currency, got {sorted(quotes)}")
        cash = balances.get(quotes.pop(), (0.0, 0.0, 0.0))[2]
        positions = {s: balances.get(self.rules[s].base, (0.0, 0.0, 0.0))[2] for s in symbols}
        return LiveSnapshot(cash, positions)

    # ---- per candle --------------------------------------------------------------------------
    def open_fills(self, book: SymbolBook, bar: Bar) -> list[Fill]:
        if not book.pending or book.order_status in _NOT_SENT:
            return []
        snap = self._lookup(book.symbol, book.order_id)
        if snap is _UNKNOWN:
            return []  # ask again next candle
        if snap is None:
            if book.order_status == "unknown":  # never reached the exchange: send it now
                self.submit(book, bar.open)
            else:
                self._event("order_missing", f"{book.symbol}: exchange no longer knows order "
                            f"{book.order_id}; dropping it")
                book.order_status = "failed"
            return []
        book.order_status, book.order_exchange_id = snap.status, snap.exchange_id
        return self._new_fills(book, snap, bar.ts, bar.open)

    def _new_fills(self, book: SymbolBook, snap: Any, ts: int, ref: float) -> list[Fill]:
        delta = snap.filled - book.order_filled
        if delta <= 1e-15:
            return []
        side = 1 if snap.side == "buy" else -1
        limit = book.order_style == "limit"
        if limit and math.isfinite(book.order_limit):
            ref = snap.price or book.order_limit  # a passive fill is measured at its price
        delta_cost = snap.cost - book.order_cost
        price = delta_cost / delta if delta_cost > 0 else (snap.average or ref)
        if snap.fee is not None:
            fee = snap.fee - book.order_fee
        else:  # no quote fee reported: estimate with the market's maker or taker rate
            rules, cfg = self.rules[book.symbol], self.model.config
            rate = rules.maker_fee if limit else rules.taker_fee
            if rate is None:
                rate = (cfg.maker_fee_bps if limit else cfg.taker_fee_bps) / 1e4
            fee = delta * price * rate
        book.order_filled, book.order_cost = snap.filled, snap.cost
        book.order_fee += fee
        slip = side * (price - ref) * delta
        return [Fill(book.order_id, book.symbol, ts, side, delta, price, ref, fee, slip,
                     book.reason)]

    def settle(self, book: SymbolBook) -> str:
        """``filled`` (the venue closed it), ``canceled`` (it ended otherwise), else
        ``working``; expiry is the trader's (it cancels a limit order past its last candle)."""
        if not book.pending:
            return ""
        if book.order_status in _DONE:
            book.pending = False
            return "filled" if book.order_status == "closed" else "canceled"
        return "working"

    def exit_fills(self, book: SymbolBook, level: float, is_target: bool, bar: Bar) -> list[Fill]:
        return []  # soft stop: the market exit is submitted with the candle's other orders

    def submit(self, book: SymbolBook, ref_price: float) -> SubmitReport:
        symbol, rules = book.symbol, self.rules[book.symbol]
        limit = book.order_style == "limit"
        price: float | None = None
        if limit:
            price = self.gateway.price_to_precision(symbol, book.order_limit)
            ref_price = price
        if book.budget is not None:
            book.target, book.budget = (
                self.model.units_for_notional_maker(book.budget, price) if price is not None
                else self.model.units_for_notional(book.budget, ref_price), None)
        delta = book.target - book.pos
        side = "buy" if delta > 0 else "sell"
        amount = self.gateway.amount_to_precision(symbol, abs(delta)) if delta else 0.0
        if not self._placeable(symbol, amount, ref_price):
            book.pending, book.order_status = False, "skipped"
            detail = f"{symbol}: order of {abs(delta):.10g} is below the market minimum"
            self._event("order_skipped", detail)
            return SubmitReport("skipped", amount, None, detail, price)
        post_only = limit and rules.post_only
        outcome = self._create(symbol, side, amount, book.order_id, price, post_only)
        if outcome is _UNKNOWN:
            book.order_status = "unknown"
            return SubmitReport("unknown", amount, None, "outcome unknown; will ask again", price)
        if outcome is _WOULD_TAKE:
            book.pending, book.order_status = False, "rejected"
            detail = (f"{symbol}: post-only {side} at {price} would take (the market moved "
                      "through it); dropped, the next candle decides again")
            self._event("post_only_rejected", detail)
            return SubmitReport("rejected", amount, None, detail, price)
        if outcome is None:
            book.pending, book.order_status = False, "failed"
            return SubmitReport("failed", amount, None, "not accepted after retries", price)
        book.order_status, book.order_exchange_id = outcome.status, outcome.exchange_id
        detail = "post-only" if post_only else "limit (no post-only on this venue)" if limit \
            else ""
        return SubmitReport(outcome.status, amount, outcome.exchange_id, detail, price)

    def tradeable(self, symbol: str, qty: float, price: float) -> bool:
        amount = self.gateway.amount_to_precision(symbol, qty) if qty > 0 else 0.0
        return self._placeable(symbol, amount, price)

    def _placeable(self, symbol: str, amount: float, price: float) -> bool:
        """``amount`` (already at the venue's precision) meets the market's minimums."""
        rules = self.rules[symbol]
        return not (amount <= 0.0
                    or (rules.min_amount is not None and amount < rules.min_amount)
                    or (rules.min_cost is not None and math.isfinite(price)
                        and amount * price < rules.min_cost))

    def cancel(self, book: SymbolBook, ts: int) -> list[Fill]:
        """Cancel the working order and return its fills up to the cancel. If the exchange
        cannot say whether the order is open (or what it filled before the cancel), this
        raises :class:`TransientExchangeError` instead of forgetting an order that may still
        fill: the tick is not committed and the restart's reconciliation resolves the order."""
        fills: list[Fill] = []
        if book.pending and book.order_status not in _NOT_SENT:
            snap = self._known(book)
            if snap is not None:
                if snap.is_open:
                    self._retry(lambda: self.gateway.cancel_order(book.symbol, snap.exchange_id),
                                f"cancel {book.order_id}")
                    snap = self._known(book) or snap
                fills = self._new_fills(book, snap, ts, book.last_close)
        book.pending, book.budget, book.order_status = False, None, "canceled"
        return fills

    def _known(self, book: SymbolBook) -> Any:
        snap = self._lookup(book.symbol, book.order_id)
        if snap is _UNKNOWN:
            raise TransientExchangeError(
                getattr(self.gateway, "id", "exchange"), "unavailable",
                f"{book.symbol}: cannot tell whether order {book.order_id} is still open; "
                "not cancelling it blind (the restart reconciles it)")
        return snap

    # ---- idempotent create, look-up, retries -------------------------------------------------
    def _create(self, symbol: str, side: str, amount: float, client_id: str,
                price: float | None = None, post_only: bool = False) -> Any:
        """The order placed (a market order, or a limit order at ``price``), ``None`` if the
        exchange surely does not have it after all retries, ``_WOULD_TAKE`` for a refused
        post-only order, or ``_UNKNOWN`` if that cannot be told."""
        kind = "market" if price is None else "limit"
        for attempt in range(self.policy.max_retries + 1):
            if attempt:
                self.sleep(self.policy.delay(attempt - 1, self.rng))
            try:
                return self.gateway.create_order(symbol, side, amount, client_id,
                                                 order_type=kind, price=price,
                                                 post_only=post_only)
            except OrderWouldTakeError:
                return _WOULD_TAKE
            except TransientExchangeError as error:
                self._event("order_uncertain", f"{client_id}: {error.kind}; asking the exchange "
                            "before any retry")
            except PermanentExchangeError as error:
                existing = self._lookup(symbol, client_id)
                if existing is not None and existing is not _UNKNOWN:
                    return existing  # e.g. "duplicate client id": it is already there
                self._event("order_rejected", f"{client_id}: {error}")
                return None
            existing = self._lookup(symbol, client_id)
            if existing is _UNKNOWN:
                return _UNKNOWN
            if existing is not None:
                self._event("order_found", f"{client_id} was accepted despite the error")
                return existing
        return None

    def _lookup(self, symbol: str, client_id: str) -> Any:
        try:
            return self._retry(lambda: self.gateway.fetch_order_by_client_id(symbol, client_id),
                               f"fetch_order {client_id}")
        except TransientExchangeError:
            return _UNKNOWN

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        """``fn()`` with backoff on transient errors; the last error propagates."""
        for attempt in range(self.policy.max_retries + 1):
            try:
                return fn()
            except TransientExchangeError as error:
                if attempt == self.policy.max_retries:
                    raise
                delay = self.policy.delay(attempt, self.rng, error.retry_after_s)
                log.warning("%s: %s, retry %d in %.2fs", what, error.kind, attempt + 1, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")
