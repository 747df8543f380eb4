"""Live start-up: reconcile the trader's stored state with the exchange before the first candle.

Working orders left by the previous run are resolved (fills made while the trader was away are
booked through the same path as live fills), then the exchange's cash and positions are adopted,
each difference recorded as a ``reconcile`` event; the risk engine is told about an adopted
position as a fill at the last known close. Paper brokers have nothing to reconcile.

This module knows nothing of the trader: it takes the books, the account and the risk state as
values and the trader's two hooks (book a fill, journal an event) as callables, and returns the
next risk state. :meth:`candlecast.trading.trader.Trader.reconcile` calls it in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from candlecast.risk import RiskEngine, RiskState
from candlecast.trading.book import Account, Fill, SymbolBook
from candlecast.trading.candles import Bar

#: ``(book, fill, atr)``: book a fill through the trader's live-fill path.
BookFill = Callable[[SymbolBook, Fill, float], None]
#: ``(kind, message)``: journal an event.
Journal = Callable[[str, str], None]


class ExchangeAccount(Protocol):
    """What the exchange says at start-up: quote cash and the base position per symbol."""

    cash: float
    positions: Mapping[str, float]


@runtime_checkable
class ReconcilingBroker(Protocol):
    """A broker with a venue to reconcile with (``CcxtBroker``; the paper broker is not one)."""

    def start(self, symbols: list[str]) -> None: ...

    def reconcile(self, books: dict[str, SymbolBook]) -> list[str]: ...

    def account(self, symbols: list[str]) -> ExchangeAccount: ...

    def open_fills(self, book: SymbolBook, bar: Bar) -> list[Fill]: ...

    def settle(self, book: SymbolBook) -> str: ...


def resolve_working_orders(broker: ReconcilingBroker, symbols: list[str],
                           books: dict[str, SymbolBook]) -> list[str]:
    """Load the venue's rules and resolve each stored working order by its client id (the
    broker's notes). Network only: call it before the state transaction."""
    broker.start(symbols)
    return list(broker.reconcile(books))


def book_fills_while_away(broker: ReconcilingBroker, books: dict[str, SymbolBook],
                          step_ns: int, book_fill: BookFill) -> None:
    """Book what the venue filled of each working order while the trader was away (at a flat
    bar one step after the last processed candle, at its close), then settle the order."""
    for book in books.values():
        if book.pending and book.last_ts is not None:
            bar = Bar(book.last_ts + step_ns, book.last_close, book.last_close,
                      book.last_close, book.last_close, 0.0)
            for fill in broker.open_fills(book, bar):
                book_fill(book, fill, book.order_atr)
            broker.settle(book)


def adopt_account(exchange: ExchangeAccount, account: Account, books: dict[str, SymbolBook],
                  engine: RiskEngine, risk_state: RiskState | None,
                  journal: Journal) -> RiskState | None:
    """Take the exchange's cash and positions as the truth (``account`` and ``books`` are
    updated in place, each difference journalled); returns the risk state that knows of the
    adopted positions."""
    if not math.isclose(exchange.cash, account.cash, rel_tol=1e-9, abs_tol=1e-9):
        journal("reconcile", f"cash {account.cash:.10g} -> exchange {exchange.cash:.10g}")
    account.cash = exchange.cash
    for sym, qty in exchange.positions.items():
        book = books[sym]
        if not math.isclose(qty, book.pos, rel_tol=1e-9, abs_tol=1e-12):
            journal("reconcile", f"{sym}: position {book.pos:.10g} -> exchange {qty:.10g}")
            risk_state = adopt_position(engine, risk_state, book, qty)
    return risk_state


def adopt_position(engine: RiskEngine, risk_state: RiskState | None, book: SymbolBook,
                   qty: float) -> RiskState | None:
    """Take the exchange's ``qty`` as the position; the risk engine sees the difference as a
    fill at the last known close (no fee: it was paid when the exchange filled it)."""
    delta = qty - book.pos
    book.pos = qty
    if risk_state is not None and math.isfinite(book.last_close):
        risk_state, _ = engine.on_fill(risk_state, book.symbol, 1 if delta > 0 else -1,
                                       abs(delta), book.last_close, 0.0, book.last_ts or 0)
    return risk_state
