"""The target-position path: a decider names a target position at every close; orders work
toward it through the shared fill rules and (optionally) the risk engine -- as the trader does.

A *decider* (the policy over a model's forecasts, or a rule baseline's precomputed targets) is
asked at each bar's close for a target: a signed fraction of equity, given the position held
(fraction of equity, a working order's goal included) and how many bars it has been held. Per
bar, in the trader's order:

1. the working order works at this bar (:func:`~candlecast.backtest.execution.work_order`:
   market at the open, or a passive limit that fills only when the bar trades through it);
2. a resting stop/target of the risk engine the bar touched exits (stop first);
3. at the close: funding, then :meth:`RiskEngine.on_bar_close` (limits, ratchets, kill switch),
   whose exits become market orders;
4. the decider's target: a change asks the risk engine (``decide_entry`` with the target's
   notional: caps, halts, trade limits; stops from the entry's ATR) when it opens, grows or
   reverses the position; reductions and exits always pass. The new order replaces the working
   one and is worked from the next bar, in the execution style for entries or for exits.

``risk=None`` skips the engine (no stops, limits or caps): the fast path for searches over many
configurations; with :meth:`RiskConfig.plain` it gives the same numbers (tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from candlecast.backtest.config import BacktestConfig, CostConfig, ExecutionConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.execution import WorkingOrder, new_order, work_order
from candlecast.backtest.inputs import Market, align, funding_array, prepare_market
from candlecast.backtest.ledger import FillLog, curves, snap
from candlecast.backtest.result import BacktestResult
from candlecast.risk import Action, RiskConfig, RiskEngine

NAN = math.nan
_CHANGE = 1e-9  # target changes smaller than this (fraction of equity) are no change
_ENTER = Action.ENTER


class Decider(Protocol):
    """Names the target position at a bar's close: ``(target, reason, edge)``. A decider may
    also have ``execution_at(bar) -> ExecutionConfig | None``: the style of the order it
    decides at that bar (else the backtest's ``execution``)."""

    def decide(self, bar: int, position: float, bars_held: int) -> tuple[float, str, float]: ...


class TargetSeries:
    """A precomputed target per bar (rule baselines). NaN keeps what is held. A change smaller
    than ``min_change`` is no order, unless it goes flat or changes side."""

    def __init__(self, targets: Sequence[float] | np.ndarray, min_change: float = 0.0,
                 reason: str = "rule") -> None:
        values = np.asarray(targets, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"targets must be one-dimensional, got shape {values.shape}")
        finite = values[np.isfinite(values)]
        if len(finite) and np.abs(finite).max() > 1.0 + 1e-12:
            raise ValueError("targets must lie in [-1, 1] (signed fractions of equity)")
        self.targets, self.min_change, self.reason = values.tolist(), min_change, reason

    def __len__(self) -> int:
        return len(self.targets)

    def decide(self, bar: int, position: float, bars_held: int) -> tuple[float, str, float]:
        target = self.targets[bar]
        if target != target:
            return position, "no_target", NAN
        if (target == 0.0 or (target > 0) != (position > 0) or position == 0.0
                or abs(target - position) >= self.min_change):
            return target, self.reason, NAN
        return position, "hold", NAN


def fill_reason(order_reason: str, before: float, after: float) -> str:
    """The reason a fill is journalled with: a target order's fill says what it did (entry,
    exit, reverse, resize); a risk exit keeps its own (stop_loss, kill_switch, ...)."""
    if not order_reason.startswith("target"):
        return order_reason  # a risk exit: stop, halt, kill switch, time stop
    if before == 0.0:
        return "target_entry"
    if after == 0.0:
        return "target_exit"
    if (after > 0) != (before > 0):
        return "target_reverse"
    return "target_resize"


def run_targets(
    candles: pd.DataFrame | Market,
    decider: Decider,
    risk: RiskConfig | RiskEngine | None = None,
    costs: CostConfig | None = None,
    config: BacktestConfig | None = None,
    execution: ExecutionConfig | None = None,
    *,
    atr: object | None = None,
    funding: object | None = None,
    kill_at: pd.Timestamp | None = None,
    name: str = "strategy",
    record_targets: bool = True,
) -> BacktestResult:
    """Backtest a decider's targets (see the module docstring); ``atr`` per bar (NaN where
    unknown) feeds the risk engine's ATR stops. ``kill_at`` engages the kill switch at the
    close of the first bar at or after it. Target changes are decisions with action
    ``target`` (``record_targets=False`` leaves them out: searches over many runs)."""
    cfg = config if config is not None else BacktestConfig()
    ex = execution if execution is not None else ExecutionConfig()
    model = CostModel(costs)
    market = candles if isinstance(candles, Market) else prepare_market(candles)
    if isinstance(risk, RiskEngine):
        engine: RiskEngine | None = risk
        if risk.bar_ns != market.bar_ns:
            raise ValueError(f"risk engine timeframe {risk.timeframe!r} does not match the "
                             f"candles' {market.timeframe!r}")
    else:
        engine = None if risk is None else RiskEngine(risk, market.timeframe)
    n, symbol = market.n, market.symbol
    if hasattr(decider, "__len__") and len(decider) != n:  # type: ignore[arg-type]
        raise ValueError(f"the decider has {len(decider)} bars but the candles {n}")  # type: ignore[arg-type]
    atr_l = (np.full(n, NAN) if atr is None else align(atr, market, "atr")).tolist()
    fund_arr = funding_array(funding, market, model.funding_per_bar(market.bar_ns / 1e9))
    fund = None if fund_arr is None else fund_arr.tolist()
    o, h, lo, c, v = (x.tolist() for x in (market.open, market.high, market.low, market.close,
                                           market.volume))
    ts = market.ts_ns.tolist()
    kill_bar = n if kill_at is None else int(np.searchsorted(market.ts_ns,
                                                            pd.Timestamp(kill_at).value))
    state = engine.start(cfg.initial_equity, ts[0]) if engine is not None else None
    log, rows = FillLog(), []
    cash, paid, pos = cfg.initial_equity, 0.0, 0.0
    order: WorkingOrder | None = None
    entry_bar, killed = -1, False
    allow_short = cfg.allow_short
    decide = decider.decide
    execution_at = getattr(decider, "execution_at", None)

    for t in range(n):
        filled = False
        if order is not None:  # (1) the working order
            fills, status = work_order(model, order, pos, t, o[t], h[t], lo[t], v[t])
            for side, qty, price, ref, fee, slip, _maker in fills:
                if engine is not None:
                    state, _ = engine.on_fill(state, symbol, side, qty, price, fee, ts[t],
                                              order.atr)
                before, pos = pos, snap(pos + side * qty, qty)
                cash -= side * qty * price + fee
                log.add(t, side, qty, price, ref, fee, slip,
                        fill_reason(order.reason, before, pos), pos, cash)
                if before == 0.0:
                    entry_bar = t
                filled = True
            if status == "expired":
                rows.append((t, "expire", order.reason, 0, abs(order.target - pos), "",
                             "limit order expired; rest cancelled"))
            if status in ("filled", "expired"):
                order = None
        if engine is not None and pos != 0.0:  # (2) resting stop / target
            p = state.positions.get(symbol)
            if p is not None and (p.stop == p.stop or p.target == p.target):
                hit = engine.check_exit(p, o[t], h[t], lo[t])
                if hit is not None:
                    level, why, is_target = hit
                    side = -1 if pos > 0 else 1
                    qty, price, fee, slip = (model.maker(abs(pos), level, v[t]) if is_target
                                             else model.taker(side, abs(pos), level, v[t]))
                    rows.append((t, "exit", str(why), side, abs(pos), "", level))
                    if qty > 0.0:
                        state, _ = engine.on_fill(state, symbol, side, qty, price, fee, ts[t])
                        pos = snap(pos + side * qty, qty)
                        cash -= side * qty * price + fee
                        log.add(t, side, qty, price, level, fee, slip, str(why), pos, cash)
                        filled = True
                    order = WorkingOrder("market", 0.0, None, str(why)) if pos != 0.0 else None
        close = c[t]  # (3) the close
        if fund is not None and pos != 0.0:
            paid += pos * close * fund[t]
        equity = cash - paid + pos * close
        if engine is not None:
            if t == kill_bar:
                state = engine.kill(state, "kill_at")
            if pos != 0.0 or filled or t == kill_bar:
                state, decisions = engine.on_bar_close(state, ts[t], equity,
                                                       {symbol: (h[t], lo[t], close, atr_l[t])})
                for d in decisions:
                    rows.append((t, str(d.action), str(d.reason), d.side, d.qty,
                                 ",".join(map(str, d.notes)), d.detail))
                    if d.action == Action.EXIT:
                        order = (WorkingOrder("market", 0.0, None, str(d.reason))
                                 if pos != 0.0 else None)
            if state.kill_switch:
                killed = True
                if pos == 0.0:
                    order = None
        if pos == 0.0:
            entry_bar = -1
        if t == n - 1 or killed or not equity > 0:  # (4) the decider's target
            continue
        intended = pos if order is None else order.goal(close)
        frac = intended * close / equity
        target, why, edge = decide(t, frac, t - entry_bar if entry_bar >= 0 else 0)
        if not allow_short and target < 0.0:
            target = 0.0
        if abs(target - frac) <= _CHANGE:
            continue
        new_side = 1 if target > 0 else -1 if target < 0 else 0
        cur_side = 1 if frac > _CHANGE else -1 if frac < -_CHANGE else 0
        grows = new_side != 0 and (new_side != cur_side or abs(target) > abs(frac))
        units: float | None = None
        budget: float | None = None
        if grows and engine is not None:
            d = engine.decide_entry(state, symbol, new_side, ts[t], equity, close, atr_l[t],
                                    replacing=pos != 0.0, notional_fraction=abs(target))
            rows.append((t, str(d.action), str(d.reason), new_side, d.qty,
                         ",".join(map(str, d.notes)), d.detail))
            if d.action == _ENTER:
                budget = new_side * d.qty * close
            elif cur_side not in (0, new_side):
                units, grows = 0.0, False  # the reversal is refused: at least leave
            else:
                continue  # refused: keep what is held
        elif grows:
            budget = target * equity
        else:
            units = target * equity / close if new_side else 0.0
        if record_targets:
            rows.append((t, "target", why, new_side, target, "",
                         "" if edge != edge else f"edge {edge:.6g}"))
        style = ex if execution_at is None else (execution_at(t) or ex)
        order = new_order(style.entry if grows else style.exit, style, t, close, pos, units,
                          budget, f"target:{why}", atr_l[t])

    equity_curve, position, funding_paid = curves(n, log, market.close, cfg.initial_equity,
                                                  fund_arr)
    result = BacktestResult(name, symbol, market.timestamps, market.close, equity_curve,
                            position, funding_paid, cfg.initial_equity, market.bars_per_year, log,
                            rows)
    result.final_risk_state = state  # type: ignore[attr-defined]
    return result
