"""One account, many coins on one time axis: the portfolio backtester (pure).

The coins' bars are put on the union of their open times. A coin without a bar at a time (a
gap, not listed yet) is not traded then: its working order waits for its next bar, it is
marked at its last real close (never a made-up price), and the decider is told it is not
tradable. Per axis bar, in the paper trader's order (:class:`candlecast.trading.Trader`, whose
replays equal this loop; tested):

1. for each coin with a bar, in universe order: its working order works
   (:func:`~candlecast.backtest.execution.work_order`), then a resting stop/target the bar
   touched exits (stop first);
2. at the close: funding, the book's equity (cash + every position at its last close), then
   :meth:`RiskEngine.on_bar_close` with the coins that have a bar (daily-loss and drawdown
   halts for the whole book, trailing stops, the kill switch; exits become market orders);
3. the decider names target weights (signed fractions of the book's equity) given every
   coin's intended weight (working orders' goals included), bars held and which coins can
   trade; for each coin with a bar, :func:`~candlecast.backtest.plan.plan_target` turns its
   target into the new working order through the risk engine (the per-coin and gross caps,
   halts and trade limits apply to the book as one account).

``risk=None`` skips the engine (no stops, halts or caps): the passive baselines and searches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pandas as pd

from candlecast.backtest.config import BacktestConfig, CostConfig, ExecutionConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.execution import WorkingOrder, work_order
from candlecast.backtest.inputs import Market
from candlecast.backtest.ledger import FillLog, fills_frame, snap
from candlecast.backtest.plan import CoinState, plan_rebalance
from candlecast.backtest.result import EquityCurve, decisions_frame
from candlecast.backtest.targets import fill_reason
from candlecast.risk import Action, RiskConfig, RiskEngine

NAN = math.nan


class PortfolioDecider(Protocol):
    """Names the book's target weights at an axis bar's close: ``(weights, reason)``; a coin
    missing from ``weights`` (or NaN) keeps what it holds. May also have
    ``execution_at(bar) -> ExecutionConfig | None``."""

    def decide(self, bar: int, ts_ns: int, weights: Mapping[str, float],
               bars_held: Mapping[str, int], tradable: frozenset[str]
               ) -> tuple[Mapping[str, float], str]: ...


class TargetWeights:
    """Precomputed target weights per axis bar (``(bars, coins)``; NaN: hold), e.g. the
    passive baselines. A change below ``min_change`` is no order unless it exits."""

    def __init__(self, symbols: Sequence[str], weights: np.ndarray, min_change: float = 0.0,
                 reason: str = "rule") -> None:
        w = np.asarray(weights, dtype=float)
        if w.ndim != 2 or w.shape[1] != len(symbols):
            raise ValueError(f"weights must be (bars, {len(symbols)}), got {w.shape}")
        self.symbols, self.weights = tuple(symbols), w
        self.min_change, self.reason = min_change, reason

    def __len__(self) -> int:
        return len(self.weights)

    def decide(self, bar: int, ts_ns: int, weights: Mapping[str, float],
               bars_held: Mapping[str, int], tradable: frozenset[str]
               ) -> tuple[dict[str, float], str]:
        out = {}
        for j, sym in enumerate(self.symbols):
            target, now = self.weights[bar, j], weights.get(sym, 0.0)
            if target == target and (target == 0.0 or abs(target - now) >= self.min_change):
                out[sym] = float(target)
        return out, self.reason


@dataclass
class PortfolioResult(EquityCurve):
    """One book over the axis: equity per bar; per coin units, weights, fills and costs."""

    name: str
    symbols: tuple[str, ...]
    timestamps: pd.DatetimeIndex  # axis: UTC open times
    equity: np.ndarray  # (bars,) at each close
    positions: np.ndarray  # (bars, coins) units at each close
    marks: np.ndarray  # (bars, coins) the last real close of each coin (NaN before its first)
    present: np.ndarray  # (bars, coins) bool: the coin had a bar
    funding: np.ndarray  # (bars, coins) funding paid at each close
    initial_equity: float
    bars_per_year: float
    logs: dict[str, FillLog] = field(repr=False)
    decision_rows: list[tuple] = field(default_factory=list, repr=False)

    @cached_property
    def weights(self) -> np.ndarray:
        """(bars, coins): each coin's position as a fraction of the book's equity."""
        value = np.where(self.positions != 0.0, self.positions * np.nan_to_num(self.marks), 0.0)
        return value / self.equity[:, None]

    @property
    def gross(self) -> np.ndarray:
        return np.abs(self.weights).sum(axis=1)

    @property
    def net(self) -> np.ndarray:
        return self.weights.sum(axis=1)

    @cached_property
    def fills(self) -> pd.DataFrame:
        frames = [fills_frame(log, self.timestamps).assign(symbol=sym)
                  for sym, log in self.logs.items()]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return frame.sort_values(["bar", "symbol"], kind="stable").reset_index(drop=True)

    @cached_property
    def decisions(self) -> pd.DataFrame:
        return decisions_frame(self.decision_rows, self.timestamps, ("bar", "symbol"))

    def coin_costs(self) -> dict[str, dict[str, float]]:
        """Per coin: fees, slippage (spread, slippage, impact), funding and their total."""
        out = {}
        for j, sym in enumerate(self.symbols):
            log = self.logs[sym]
            fees, slip = float(np.sum(log.fee)), float(np.sum(log.slip))
            funding = float(self.funding[:, j].sum())
            out[sym] = {"fees": fees, "slippage": slip, "funding": funding,
                        "total": fees + slip + funding}
        return out

    @property
    def costs(self) -> dict[str, float]:
        per = self.coin_costs().values()
        return {k: float(sum(c[k] for c in per)) for k in ("fees", "slippage", "funding", "total")}

    def traded_notional(self) -> dict[str, float]:
        return {sym: float(np.dot(log.qty, log.price)) if len(log) else 0.0
                for sym, log in self.logs.items()}

    def contributions(self) -> dict[str, float]:
        """Each coin's share of the book's profit: its fills' cash flows (fees included),
        funding, and the final position at its last close; they sum to the book's PnL."""
        out = {}
        for j, sym in enumerate(self.symbols):
            log = self.logs[sym]
            flow = -float(np.dot(np.asarray(log.side, dtype=float) * np.asarray(log.qty),
                                 log.price)) - float(np.sum(log.fee)) if len(log) else 0.0
            last = self.positions[-1, j]
            value = last * self.marks[-1, j] if last != 0.0 else 0.0
            out[sym] = flow + value - float(self.funding[:, j].sum())
        return out


@dataclass
class _Coin:
    """One coin's loop variables (the trader's SymbolBook)."""

    pos: float = 0.0
    order: WorkingOrder | None = None
    bars: int = 0  # bars of this coin processed: the index of its next bar
    entry_bar: int = -1
    last_close: float = NAN


def axis_index(markets: Mapping[str, Market]) -> tuple[np.ndarray, np.ndarray]:
    """The union of the coins' open times (int64 ns) and, per coin, the position of each
    axis time in its own bars (-1: no bar then)."""
    times = np.unique(np.concatenate([m.ts_ns for m in markets.values()]))
    where = np.full((len(times), len(markets)), -1, dtype=np.int64)
    for j, market in enumerate(markets.values()):
        where[np.searchsorted(times, market.ts_ns), j] = np.arange(market.n)
    return times, where


def run_portfolio(
    markets: Mapping[str, Market],
    decider: PortfolioDecider,
    risk: RiskConfig | RiskEngine | None = None,
    costs: CostConfig | None = None,
    config: BacktestConfig | None = None,
    execution: ExecutionConfig | None = None,
    *,
    atr: Mapping[str, np.ndarray] | None = None,
    name: str = "portfolio",
    record_targets: bool = True,
) -> PortfolioResult:
    """Backtest a decider's target weights on one account (see the module docstring);
    ``markets`` in universe order, ``atr`` per coin bar (the risk engine's ATR stops)."""
    if not markets:
        raise ValueError("a portfolio needs at least one market")
    cfg = config if config is not None else BacktestConfig()
    ex = execution if execution is not None else ExecutionConfig()
    model = CostModel(costs)
    symbols = tuple(markets)
    first = next(iter(markets.values()))
    if any(m.timeframe != first.timeframe for m in markets.values()):
        raise ValueError("every market of a portfolio must have the same timeframe")
    engine = (risk if isinstance(risk, RiskEngine) else
              None if risk is None else RiskEngine(risk, first.timeframe))
    times, where = axis_index(markets)
    n, k = len(times), len(symbols)
    bars = {s: (m.open.tolist(), m.high.tolist(), m.low.tolist(), m.close.tolist(),
                m.volume.tolist()) for s, m in markets.items()}
    atrs = {s: (np.full(markets[s].n, NAN) if atr is None or s not in atr
                else np.asarray(atr[s], dtype=float)).tolist() for s in symbols}
    fund_rate = model.funding_per_bar(first.bar_ns / 1e9)
    coins = {s: _Coin() for s in symbols}
    logs = {s: FillLog() for s in symbols}
    rows: list[tuple] = []
    positions, marks = np.zeros((n, k)), np.full((n, k), NAN)
    funding, equity_curve = np.zeros((n, k)), np.zeros(n)
    cash, paid = cfg.initial_equity, 0.0
    state: Any = engine.start(cfg.initial_equity, int(times[0])) if engine is not None else None
    killed = False
    execution_at = getattr(decider, "execution_at", None)

    for t in range(n):
        ts = int(times[t])
        here = [(j, s, int(where[t, j])) for j, s in enumerate(symbols) if where[t, j] >= 0]
        filled = False
        for _j, s, i in here:  # (1) working orders, resting exits
            c = coins[s]
            o, h, lo, _close, v = (b[i] for b in bars[s])
            if c.order is not None:
                order = c.order
                fills, status = work_order(model, order, c.pos, c.bars, o, h, lo, v)
                for side, qty, price, ref, fee, slip, _maker in fills:
                    if engine is not None:
                        state, _ = engine.on_fill(state, s, side, qty, price, fee, ts, order.atr)
                    before, c.pos = c.pos, snap(c.pos + side * qty, qty)
                    cash -= side * qty * price + fee
                    logs[s].add(t, side, qty, price, ref, fee, slip,
                                fill_reason(order.reason, before, c.pos), c.pos, cash)
                    if before == 0.0:
                        c.entry_bar = c.bars
                    filled = True
                if status == "expired":
                    rows.append((t, s, "expire", order.reason, 0, abs(order.target - c.pos), "",
                                 "limit order expired; rest cancelled"))
                if status in ("filled", "expired"):
                    c.order = None
            if engine is not None and c.pos != 0.0:
                p = state.positions.get(s)
                if p is not None and (p.stop == p.stop or p.target == p.target):
                    hit = engine.check_exit(p, o, h, lo)
                    if hit is not None:
                        level, why, is_target = hit
                        side = -1 if c.pos > 0 else 1
                        rows.append((t, s, "exit", str(why), side, abs(c.pos), "", level))
                        qty, price, fee, slip = (model.maker(abs(c.pos), level, v) if is_target
                                                 else model.taker(side, abs(c.pos), level, v))
                        if qty > 0.0:
                            state, _ = engine.on_fill(state, s, side, qty, price, fee, ts)
                            c.pos = snap(c.pos + side * qty, qty)
                            cash -= side * qty * price + fee
                            logs[s].add(t, side, qty, price, level, fee, slip, str(why), c.pos,
                                        cash)
                            filled = True
                        c.order = (WorkingOrder("market", 0.0, None, str(why)) if c.pos != 0.0
                                   else None)
        for j, s, i in here:  # (2) the close
            c = coins[s]
            c.last_close = bars[s][3][i]
            if fund_rate != 0.0 and c.pos != 0.0:
                due = c.pos * c.last_close * fund_rate
                paid += due
                funding[t, j] = due
        equity = cash - paid
        for s in symbols:
            c = coins[s]
            if c.pos != 0.0:
                equity += c.pos * c.last_close
        if engine is not None and (filled or any(c.pos != 0.0 for c in coins.values())):
            marks_now = {s: (bars[s][1][i], bars[s][2][i], bars[s][3][i], atrs[s][i])
                         for _j, s, i in here}
            state, decisions = engine.on_bar_close(state, ts, equity, marks_now)
            for d in decisions:
                rows.append((t, d.symbol, str(d.action), str(d.reason), d.side, d.qty,
                             ",".join(map(str, d.notes)), d.detail))
                if d.action == Action.EXIT and d.symbol in coins:
                    c = coins[d.symbol]
                    c.order = WorkingOrder("market", 0.0, None, str(d.reason)) if c.pos else None
            if state.kill_switch:
                killed = True
                for c in coins.values():
                    if c.pos == 0.0:
                        c.order = None
        for _j, s, _i in here:
            if coins[s].pos == 0.0:
                coins[s].entry_bar = -1
        if t < n - 1 and not killed and equity > 0 and here:  # (3) the decider
            intended = {s: (c.pos if c.order is None else c.order.goal(c.last_close))
                        * c.last_close / equity if c.last_close == c.last_close else 0.0
                        for s, c in coins.items()}
            held = {s: (c.bars - c.entry_bar if c.entry_bar >= 0 else 0)
                    for s, c in coins.items()}
            targets, decided = decider.decide(t, ts, intended, held,
                                              frozenset(s for _j, s, _i in here))
            style = ex if execution_at is None else (execution_at(t) or ex)
            states = [CoinState(s, c.pos, intended[s], c.last_close, c.bars,
                                atrs[s][where[t, j]] if where[t, j] >= 0 else NAN,
                                where[t, j] >= 0) for j, (s, c) in enumerate(coins.items())]
            for s, plan in plan_rebalance(engine, state, states, targets, decided, equity, ts,
                                          style, cfg.allow_short):
                rows.extend((t, s, *r) for r in plan.rows
                            if record_targets or r[0] != "target")
                if plan.order is not None:
                    coins[s].order = plan.order
        for _j, s, _i in here:
            coins[s].bars += 1
        for j, s in enumerate(symbols):
            positions[t, j] = coins[s].pos
            marks[t, j] = coins[s].last_close
        equity_curve[t] = equity
    present = where >= 0
    result = PortfolioResult(name, symbols, pd.DatetimeIndex(pd.to_datetime(times, utc=True)),
                             equity_curve, positions, marks, present, funding,
                             cfg.initial_equity, first.bars_per_year, logs, rows)
    result.final_risk_state = state  # type: ignore[attr-defined]
    return result
