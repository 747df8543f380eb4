"""The broker interface, and the paper broker that fills exactly like the backtester.

The trader owns each symbol's :class:`~candlecast.trading.book.SymbolBook` (position and working
order) and calls the broker at fixed points of every candle:

1. :meth:`Broker.open_fills` — fills of the working order during this candle (paper: the
   shared fill rules of :func:`candlecast.backtest.execution.work_order`: a market order steps
   at the open with the cost model, volume cap and partial fills; a limit order fills at its
   price, with the maker fee, only if the candle traded THROUGH it, partially under the volume
   cap; live: whatever the exchange filled since the last poll, and a limit order still open on
   its last candle is cancelled);
2. :meth:`Broker.settle` — the working order's status after the candle: ``filled``,
   ``working``, ``expired`` (a limit order's rest cancelled) or ``to_market`` (its rest must go
   out as a market order), or a venue's final status (live); done orders stop being pending;
3. :meth:`Broker.exit_fills` — a resting stop/target the risk engine says this candle touched
   (paper: filled at its level like the backtester; live: nothing yet, a market exit order is
   sent at the end of the candle, a "soft stop");
4. :meth:`Broker.submit` — after the candle's state is committed, place the working order the
   candle's decisions produced (paper: nothing to do, it fills at the next open);
5. :meth:`Broker.cancel` — cancel the working order (kill switch, replaced decision, a live
   limit order past its last candle), returning any fills the venue made before the cancel (so
   none is lost).

:meth:`Broker.tradeable` says whether a quantity can be traded at all (live: the venue's amount
precision and minimums): a position too small to sell (dust left by rounding) counts as flat
when the trader asks the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from candlecast.backtest.config import CostConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.execution import work_order
from candlecast.trading.book import Fill, SymbolBook
from candlecast.trading.candles import Bar

#: statuses :meth:`Broker.settle` returns for an order that is no longer worked as it was
EXPIRED, TO_MARKET = "expired", "to_market"


@dataclass(frozen=True)
class SubmitReport:
    """What :meth:`Broker.submit` did with a working order."""

    status: str  # "working" (paper), "open", "closed", "skipped", "unknown", "rejected", ...
    amount: float = 0.0
    exchange_id: str | None = None
    detail: str = ""
    price: float | None = None  # a limit order's price, as sent (exchange precision)


@dataclass(frozen=True)
class Reconciliation:
    """Start-up comparison of the stored state with the venue (live) or a no-op (paper)."""

    notes: tuple[str, ...] = ()


class Broker(Protocol):
    name: str
    live: bool

    def open_fills(self, book: SymbolBook, bar: Bar) -> list[Fill]: ...

    def settle(self, book: SymbolBook) -> str: ...

    def exit_fills(self, book: SymbolBook, level: float, is_target: bool, bar: Bar) -> list[Fill]:
        ...

    def submit(self, book: SymbolBook, ref_price: float) -> SubmitReport: ...

    def cancel(self, book: SymbolBook, ts: int) -> list[Fill]:
        """Cancel the working order; returns fills that happened before the cancel took."""
        ...

    def tradeable(self, symbol: str, qty: float, price: float) -> bool:
        """Whether an order for ``qty`` units (unsigned) at about ``price`` could be placed."""
        ...


class PaperBroker:
    """Simulated execution with the backtester's :class:`CostModel` and fill rules.

    Decision at a candle's close -> worked from the next candle: a market order at its open
    (an entry is a quote-currency budget turned into units at that open net of costs; no fill
    exceeds the configured share of the candle's volume, the rest is worked at later opens); a
    limit order at its price, only when a later candle trades through it, until its last candle
    (then cancelled or turned into a market order). Stops fill at their level with taker costs,
    targets at theirs with the maker fee.
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
        order = book.working_order()
        fills, status = work_order(self.model, order, book.pos, book.bars, bar.open, bar.high,
                                   bar.low, bar.volume)
        book.take_order(order)
        book.order_status = status
        return [Fill(book.order_id, book.symbol, bar.ts, side, qty, price, ref, fee, slip,
                     book.reason) for side, qty, price, ref, fee, slip, _maker in fills]

    def settle(self, book: SymbolBook) -> str:
        if not book.pending:
            return ""
        status = book.order_status
        if status in ("filled", EXPIRED):
            book.pending = False
        return status

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

    def tradeable(self, symbol: str, qty: float, price: float) -> bool:
        return qty > 0.0  # the simulator trades any size (as the backtester)
