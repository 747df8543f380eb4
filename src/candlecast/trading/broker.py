"""The broker interface, and the paper broker that fills exactly like the backtester.

The trader owns each symbol's :class:`~candlecast.trading.book.SymbolBook` (position and working
order) and calls the broker at fixed points of every candle:

1. :meth:`Broker.open_fills` — fills of the working order at this candle's open
   (paper: one step of the backtester's market order, with its cost model, volume cap and
   partial fills; live: whatever the exchange filled since the last poll);
2. :meth:`Broker.settle` — is the working order done?
3. :meth:`Broker.exit_fills` — a resting stop/target the risk engine says this candle touched
   (paper: filled at its level like the backtester; live: nothing yet, a market exit order is
   sent at the end of the candle, a "soft stop");
4. :meth:`Broker.submit` — after the candle's state is committed, place the working order the
   candle's decisions produced (paper: nothing to do, it fills at the next open);
5. :meth:`Broker.cancel` — cancel the working order (kill switch, replaced decision), returning
   any fills the venue made before the cancel (so none is lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from candlecast.backtest.config import CostConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.ledger import order_step
from candlecast.trading.book import Fill, SymbolBook
from candlecast.trading.candles import Bar

_TOL = 1e-12  # the backtester's "working order reached its target" tolerance


@dataclass(frozen=True)
class SubmitReport:
    """What :meth:`Broker.submit` did with a working order."""

    status: str  # "working" (paper), "open", "closed", "skipped", "unknown", "rejected"
    amount: float = 0.0
    exchange_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Reconciliation:
    """Start-up comparison of the stored state with the venue (live) or a no-op (paper)."""

    notes: tuple[str, ...] = ()


class Broker(Protocol):
    name: str
    live: bool

    def open_fills(self, book: SymbolBook, bar: Bar) -> list[Fill]: ...

    def settle(self, book: SymbolBook) -> None: ...

    def exit_fills(self, book: SymbolBook, level: float, is_target: bool, bar: Bar) -> list[Fill]:
        ...

    def submit(self, book: SymbolBook, ref_price: float) -> SubmitReport: ...

    def cancel(self, book: SymbolBook, ts: int) -> list[Fill]:
        """Cancel the working order; returns fills that happened before the cancel took."""
        ...


class PaperBroker:
    """Simulated execution with the backtester's :class:`CostModel` and order stepping.

    Decision at a candle's close -> fill at the next candle's open; an entry is a quote-currency
    budget turned into units at that open net of costs; no fill exceeds the configured share of
    the candle's volume (the rest is worked at later opens); stops fill at their level with taker
    costs, targets at theirs with the maker fee.
    """

    name = "paper"
    live = False

    def __init__(self, costs: CostConfig | None = None) -> None:
        self.model = CostModel(costs)

    def __repr__(self) -> str:
        return f"PaperBroker({self.model.config!r})"

    def open_fills(self, book: SymbolBook, bar: Bar) -> list[Fill]:
        if not book.pending:
            return []
        if book.budget is not None:  # an entry sized in quote currency becomes units now
            book.target, book.budget = self.model.units_for_notional(book.budget, bar.open), None
        step = order_step(self.model, book.pos, book.target, bar.open, bar.volume)
        if step is None:
            return []
        side, qty, price, fee, slip = step
        return [Fill(book.order_id, book.symbol, bar.ts, side, qty, price, bar.open, fee, slip,
                     book.reason)]

    def settle(self, book: SymbolBook) -> None:
        if book.pending and abs(book.target - book.pos) <= _TOL * max(1.0, abs(book.target)):
            book.pending = False

    def exit_fills(self, book: SymbolBook, level: float, is_target: bool, bar: Bar) -> list[Fill]:
        side = -1 if book.pos > 0 else 1
        size = abs(book.pos)
        qty, price, fee, slip = (self.model.maker(size, level, bar.volume) if is_target
                                 else self.model.taker(side, size, level, bar.volume))
        if qty <= 0.0:
            return []
        return [Fill(book.order_id, book.symbol, bar.ts, side, qty, price, level, fee, slip,
                     book.reason)]

    def submit(self, book: SymbolBook, ref_price: float) -> SubmitReport:
        return SubmitReport("working" if book.pending else "closed")

    def cancel(self, book: SymbolBook, ts: int) -> list[Fill]:
        book.pending, book.budget = False, None
        return []
