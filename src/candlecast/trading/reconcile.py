"""Live start-up: reconcile the trader's stored state with the exchange before the first candle.

Working orders left by the previous run are resolved (fills made while the trader was away are
booked through the same path as live fills), then the exchange's cash and positions are adopted,
each difference recorded as a ``reconcile`` event; the risk engine is told about an adopted
position as a fill at the last known close. Paper brokers have nothing to reconcile.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from candlecast.trading.candles import Bar

if TYPE_CHECKING:
    from candlecast.trading.book import SymbolBook
    from candlecast.trading.trader import Trader


def reconcile_with_exchange(trader: Trader) -> list[str]:
    """The broker's reconciliation notes (empty for a broker without a ``start``)."""
    start = getattr(trader.broker, "start", None)
    if start is None:
        return []
    symbols = list(trader.config.symbols)
    start(symbols)
    notes = trader.broker.reconcile(trader.books)  # type: ignore[attr-defined]
    with trader._tx():
        for book in trader.books.values():  # fills made while we were away
            if book.pending and book.last_ts is not None and trader.risk_state is not None:
                bar = Bar(book.last_ts + trader.step_ns, book.last_close, book.last_close,
                          book.last_close, book.last_close, 0.0)
                for fill in trader.broker.open_fills(book, bar):
                    trader._apply_fill(book, fill, book.order_atr)
                trader.broker.settle(book)
        account = trader.broker.account(symbols)  # type: ignore[attr-defined]
        if not math.isclose(account.cash, trader.account.cash, rel_tol=1e-9, abs_tol=1e-9):
            trader._event("reconcile", f"cash {trader.account.cash:.10g} -> exchange "
                          f"{account.cash:.10g}")
        trader.account.cash = account.cash
        for sym, qty in account.positions.items():
            book = trader.books[sym]
            if not math.isclose(qty, book.pos, rel_tol=1e-9, abs_tol=1e-12):
                trader._event("reconcile", f"{sym}: position {book.pos:.10g} -> exchange "
                              f"{qty:.10g}")
                adopt_position(trader, book, qty)
        trader._finish_orders(max((b.last_ts or 0) for b in trader.books.values()))
        trader._save()
    return list(notes)


def adopt_position(trader: Trader, book: SymbolBook, qty: float) -> None:
    """Take the exchange's ``qty`` as the position; the risk engine sees the difference as a
    fill at the last known close (no fee: it was paid when the exchange filled it)."""
    delta = qty - book.pos
    book.pos = qty
    if trader.risk_state is not None and math.isfinite(book.last_close):
        trader.risk_state, _ = trader.engine.on_fill(
            trader.risk_state, book.symbol, 1 if delta > 0 else -1, abs(delta),
            book.last_close, 0.0, book.last_ts or 0)
