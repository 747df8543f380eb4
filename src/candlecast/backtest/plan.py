"""How a target becomes a working order (pure): step 4 of the target backtesters and the trader.

:func:`plan_target` is the decision step of :func:`candlecast.backtest.targets.run_targets`
written for one symbol of the trader and for each coin of the portfolio backtester
(:func:`candlecast.backtest.portfolio.run_portfolio`), with the same arithmetic in the same
order (parity is tested to float rounding): ``frac`` is the intended position (a working
order's goal included) as a fraction of equity at the close; a change that opens, grows or
reverses the position asks :meth:`RiskEngine.decide_entry` with the target's notional (caps,
halts, trade limits; the stop from this close's ATR); a refused reversal still leaves the old
side; reductions and exits always pass. The order is worked in the answer's execution style
for entries (growing) or for exits, from the next candle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from candlecast.backtest.config import ExecutionConfig
from candlecast.backtest.execution import WorkingOrder, new_order
from candlecast.risk import Action, RiskEngine, RiskState

_CHANGE = 1e-9  # as run_targets: target changes smaller than this are no change
#: (action, reason, side, qty, notes, detail): one row of the decisions journal
DecisionRow = tuple[str, str, int, float, str, str]


@dataclass(frozen=True)
class TargetPlan:
    """The decision rows to journal and the new working order (``None``: keep what is held)."""

    rows: tuple[DecisionRow, ...]
    order: WorkingOrder | None


def plan_target(engine: RiskEngine | None, state: RiskState | None, symbol: str, ts: int,
                bar: int, target: float, reason: str, edge: float, frac: float, pos: float,
                equity: float, close: float, atr: float, execution: ExecutionConfig,
                allow_short: bool, other_notional: float = math.nan) -> TargetPlan:
    """The order toward ``target`` (signed fraction of equity) decided at the close of candle
    ``bar`` (``ts``), from position ``pos`` (units) whose intended fraction is ``frac``.
    Without a risk engine (``engine=None``: the passive baselines) every entry is sized at
    the target's notional. ``other_notional``: the other coins' intended absolute notional for
    the gross-exposure cap (a portfolio rebalance; see :meth:`RiskEngine.decide_entry`)."""
    if not allow_short and target < 0.0:
        target = 0.0
    if abs(target - frac) <= _CHANGE:
        return TargetPlan((), None)
    new_side = 1 if target > 0 else -1 if target < 0 else 0
    cur_side = 1 if frac > _CHANGE else -1 if frac < -_CHANGE else 0
    grows = new_side != 0 and (new_side != cur_side or abs(target) > abs(frac))
    rows: list[DecisionRow] = []
    units: float | None = None
    budget: float | None = None
    if grows and engine is None:
        budget = target * equity
    elif grows:
        assert engine is not None and state is not None
        d = engine.decide_entry(state, symbol, new_side, ts, equity,
                                close, atr, replacing=pos != 0.0,
                                notional_fraction=abs(target), other_notional=other_notional)
        rows.append((str(d.action), str(d.reason), new_side, d.qty,
                     ",".join(map(str, d.notes)), d.detail))
        if d.action == Action.ENTER:
            budget = new_side * d.qty * close
        elif cur_side not in (0, new_side):
            units, grows = 0.0, False  # the reversal is refused: at least leave
        else:
            return TargetPlan(tuple(rows), None)  # refused: keep what is held
    else:
        units = target * equity / close if new_side else 0.0
    rows.append(("target", reason, new_side, target, "",
                 "" if math.isnan(edge) else f"edge {edge:.6g}"))
    order = new_order(execution.entry if grows else execution.exit, execution, bar, close, pos,
                      units, budget, f"target:{reason}", atr)
    return TargetPlan(tuple(rows), order)


@dataclass(frozen=True)
class CoinState:
    """One coin of a book at a decision: its position (units), intended weight (a working
    order's goal included), last close, bar count (the coin's ``bar`` of :func:`plan_target`),
    ATR, and whether it has a bar now (only then can it trade)."""

    symbol: str
    pos: float
    frac: float
    close: float
    bar: int
    atr: float
    tradable: bool


def plan_rebalance(engine: RiskEngine | None, state: RiskState | None,
                   coins: Sequence[CoinState], targets: Mapping[str, float], reason: str,
                   equity: float, ts: int, execution: ExecutionConfig, allow_short: bool
                   ) -> list[tuple[str, TargetPlan]]:
    """:func:`plan_target` for every tradable coin with a target, in universe order, the risk
    engine's gross cap seeing the whole rebalance: each coin's ``other_notional`` is the other
    coins' intended notional, updated with the orders planned before it. The one rebalance
    step of the portfolio backtester and the trader (parity by construction)."""
    exposure = {c.symbol: abs(c.frac) * equity for c in coins}
    total = sum(exposure.values())
    out = []
    for coin in coins:
        target = targets.get(coin.symbol)
        if not coin.tradable or target is None or target != target:
            continue
        wanted = 0.0 if target < 0.0 and not allow_short else target
        if abs(wanted - coin.frac) <= _CHANGE:
            continue  # no change (plan_target's first test, without the call)
        plan = plan_target(engine, state, coin.symbol, ts, coin.bar, float(target), reason,
                           math.nan, coin.frac, coin.pos, equity, coin.close, coin.atr,
                           execution, allow_short, total - exposure[coin.symbol])
        if plan.order is not None:
            now = abs(plan.order.goal(coin.close)) * coin.close
            total += now - exposure[coin.symbol]
            exposure[coin.symbol] = now
        if plan.rows or plan.order is not None:
            out.append((coin.symbol, plan))
    return out
