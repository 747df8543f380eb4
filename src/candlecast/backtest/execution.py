"""Order-fill rules shared by the target backtester and the paper broker (pure).

A working order is a :class:`WorkingOrder`: where the position should go (``target`` units, or a
quote-currency ``budget`` converted to units when the price is known), how (``market`` or
``limit``) and until when. :func:`work_order` advances it through one bar and returns the fills:

* market: one step of the taker order at the bar's open (:func:`~candlecast.backtest.ledger.
  order_step`: fees, half spread, slippage, impact, the volume cap; the rest carries over);
* limit: fills only if the bar trades THROUGH the limit price (a buy needs ``low < limit``, a sell
  ``high > limit``; a bar that merely touches it does not fill), at the limit price with the
  maker fee, at most the volume cap's share of the bar (partial fills); after its last bar the
  rest is cancelled or becomes a market order for the next open (``on_expire``).
"""

from __future__ import annotations

from dataclasses import dataclass

from candlecast.backtest.config import ExecutionConfig, ExecutionStyle
from candlecast.backtest.costs import CostModel
from candlecast.backtest.ledger import order_step

_TOL = 1e-12
#: (side, qty, price, reference price, fee, slippage, maker)
BarFill = tuple[int, float, float, float, float, float, bool]


@dataclass(slots=True)
class WorkingOrder:
    """An order toward a position of ``target`` units (signed).

    ``budget`` (signed quote currency) is an order sized in money: it becomes ``target`` at the
    first price the order can fill at (a market order's next open, a limit order's price).
    ``last_bar`` is the last bar a limit order may fill on (inclusive).
    """

    style: ExecutionStyle
    target: float
    budget: float | None
    reason: str
    limit: float = float("nan")
    last_bar: int = -1
    on_expire: str = "cancel"
    atr: float = float("nan")  # known when the order was decided (the risk engine's stop)

    def goal(self, price: float) -> float:
        """The target in units, the budget converted at ``price`` if not yet done."""
        return self.target if self.budget is None else self.budget / price


def limit_price(close: float, side: int, offset_bps: float) -> float:
    """Where a passive order rests: ``offset_bps`` below the close for a buy, above for a sell."""
    return close * (1.0 - side * offset_bps / 1e4)


def trades_through(side: int, limit: float, high: float, low: float) -> bool:
    """Whether a bar trades through a resting limit order's price (strictly: a touch is no fill)."""
    return low < limit if side > 0 else high > limit


def new_order(style: ExecutionStyle, execution: ExecutionConfig, bar: int, close: float,
              position: float, target: float | None, budget: float | None, reason: str,
              atr: float = float("nan")) -> WorkingOrder:
    """A working order decided at the close of ``bar`` toward ``target`` units or ``budget``.

    A limit order rests at :func:`limit_price` for the direction of the change and may fill on
    bars ``bar + 1 .. bar + execution.expire_bars``.
    """
    if style == "market":
        return WorkingOrder("market", 0.0 if target is None else target, budget, reason, atr=atr)
    goal = target if target is not None else (budget or 0.0) / close
    side = 1 if goal > position else -1
    return WorkingOrder("limit", 0.0 if target is None else target, budget, reason,
                        limit=limit_price(close, side, execution.limit_offset_bps),
                        last_bar=bar + execution.expire_bars, on_expire=execution.on_expire,
                        atr=atr)


def work_order(model: CostModel, order: WorkingOrder, position: float, bar: int, open_: float,
               high: float, low: float, volume: float) -> tuple[list[BarFill], str]:
    """Advance ``order`` through one bar from ``position``: the fills and the order's status
    afterwards: ``working``, ``filled``, ``expired`` (a limit order's rest cancelled) or
    ``to_market`` (its rest becomes a market order for the next open). Mutates ``order``
    (budget conversion; the style on ``to_market``)."""
    if order.style == "market":
        if order.budget is not None:  # an entry sized in money becomes units at this open
            order.target, order.budget = model.units_for_notional(order.budget, open_), None
        step = order_step(model, position, order.target, open_, volume)
        fills: list[BarFill] = []
        if step is not None:
            side, qty, price, fee, slip = step
            fills.append((side, qty, price, open_, fee, slip, False))
            position += side * qty
        return fills, "filled" if _reached(position, order.target) else "working"
    if order.budget is not None:  # sized at the limit price, net of the maker fee
        order.target, order.budget = model.units_for_notional_maker(order.budget, order.limit), None
    delta = order.target - position
    fills = []
    if abs(delta) > _TOL * max(1.0, abs(order.target), abs(position)):
        side = 1 if delta > 0 else -1
        if trades_through(side, order.limit, high, low):
            qty, price, fee, slip = model.maker(abs(delta), order.limit, volume)
            if qty > 0.0:
                fills.append((side, qty, price, order.limit, fee, slip, True))
                position += side * qty
    if _reached(position, order.target):
        return fills, "filled"
    if bar >= order.last_bar:  # expired with a rest
        if order.on_expire == "market":
            order.style, order.limit = "market", float("nan")
            return fills, "to_market"
        return fills, "expired"
    return fills, "working"


def _reached(position: float, target: float) -> bool:
    return abs(target - position) <= _TOL * max(1.0, abs(target))
