"""The trader's step (4) in portfolio mode (``trade.decision: portfolio``): the symbols are ONE
book, and one ``/portfolio`` answer per candle gives every coin's target weight.

:func:`rebalance_step` reports every coin's intended weight (a working order's goal included;
dust the venue cannot trade counts as flat) and bars held with their recent candles, and turns
a fresh answer into working orders through
:func:`~candlecast.backtest.plan.plan_rebalance`: the same rebalance step, in the same order,
as the portfolio backtester (:func:`candlecast.backtest.portfolio.run_portfolio`), so a paper
replay equals the backtest. Only coins with a candle this tick are traded.

:func:`report_partial` runs after the live orders of a rebalance went out: when some coins'
orders were refused, skipped (below the market minimum) or are of unknown outcome while others
went out, the book is partly rebalanced: that is journalled (``partial_rebalance``, a warning
with each coin's outcome and the weights reached) and alerted, never silent; the next candle's
answer is asked with the book as it really is.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from candlecast.backtest.plan import CoinState, plan_rebalance
from candlecast.trading.portfolio_signals import PortfolioAnswer, fetch_fresh_portfolio

if TYPE_CHECKING:
    from candlecast.trading.book import SymbolBook
    from candlecast.trading.broker import SubmitReport
    from candlecast.trading.candles import Bar

#: the trader (trading/trader.py imports this module: typed loosely to keep one direction)
Trader = Any

NAN = math.nan
log = logging.getLogger(__name__)
#: live submit outcomes that leave a coin's order not (surely) placed
NOT_PLACED = frozenset({"skipped", "failed", "rejected", "unknown"})


def intended_weights(trader: Trader, equity: float) -> dict[str, tuple[float, int]]:
    """Every coin's intended weight and bars held (universe order)."""
    out = {}
    for sym in trader.config.symbols:
        book = trader.books[sym]
        close = book.last_close
        if close != close or not equity > 0:
            out[sym] = (0.0, 0)
            continue
        goal, held = book.goal(close), book.bars_held()
        if goal != 0.0 and not trader.broker.tradeable(sym, abs(goal), close):
            goal, held = 0.0, 0  # dust the venue will not trade counts as flat
        out[sym] = (goal * close / equity, held)
    return out


def rebalance_step(trader: Trader, ts: int, valid: dict[str, Bar],
                   rows: dict[str, dict[str, float]], equity: float
                   ) -> tuple[PortfolioAnswer | None, str]:
    """Ask ``/portfolio`` and plan the book's orders (see the module docstring); returns the
    answer (None without a fresh one) and the status journalled with each coin's bar."""
    assert trader.risk_state is not None
    positions = intended_weights(trader, equity)
    close = pd.Timestamp(ts + trader.step_ns, tz="UTC")
    candles = {s: list(trader._recent[s]) for s in trader.config.symbols}
    answer, why = fetch_fresh_portfolio(trader.signals, trader.config, close, candles,
                                        positions, trader.sleep)
    account = trader.account
    if answer is None:
        account.signal_failures += 1
        trader._event("no_fresh_signal", f"portfolio: {why}; no new positions this candle "
                      f"({account.signal_failures} in a row)", ts)
        return None, "unavailable"
    if account.signal_failures:
        trader._event("signal_recovered", f"portfolio: fresh answer after "
                      f"{account.signal_failures} candle(s) without", ts)
    account.signal_failures = 0
    coins = [CoinState(s, trader.books[s].pos, positions[s][0], trader.books[s].last_close,
                       trader.books[s].bars, rows[s]["atr"] if s in valid else NAN, s in valid)
             for s in trader.config.symbols]
    plans = plan_rebalance(trader.engine, trader.risk_state, coins, answer.weights,
                           answer.reason, equity, ts, answer.execution,
                           trader.backtest.allow_short)
    for sym, plan in plans:
        for action, reason, side, qty, notes, detail in plan.rows:
            trader.store.add_decision(ts, sym, action, reason, side, qty, notes, detail)
        order = plan.order
        if order is not None:
            trader._set_order(trader.books[sym], ts, order.target, order.budget, order.reason,
                              True, order.atr, style=order.style, limit=order.limit,
                              last_bar=order.last_bar, on_expire=order.on_expire)
    for sym in valid:
        book = trader.books[sym]
        book.target_position = answer.weights.get(sym, NAN)
        book.policy_reason = answer.reason
    return answer, "ok"


def report_partial(trader: Trader, reports: list[tuple[SymbolBook, SubmitReport]]) -> None:
    """Journal and alert a partly placed rebalance (see the module docstring)."""
    failed = [(b, r) for b, r in reports if r.status in NOT_PLACED]
    if not failed or len(reports) < 2:
        return
    placed = [(b, r) for b, r in reports if r.status not in NOT_PLACED]
    equity = trader.equity()
    detail = "; ".join(
        [f"{b.symbol} {r.status}" + (f" ({r.detail})" if r.detail else "") for b, r in failed]
        + [f"{b.symbol} {r.status}" for b, r in placed])
    held = ", ".join(f"{s} {trader.books[s].pos * trader.books[s].last_close / equity:+.3f}"
                     for s in trader.config.symbols
                     if trader.books[s].pos and equity > 0)
    message = (f"partial rebalance: {len(failed)} of {len(reports)} orders not placed: "
               f"{detail}. Book weights now: {held or 'flat'}; the next candle decides with "
               "the book as it is")
    ts = max((b.last_ts or 0) for b, _ in reports)
    with trader._tx():
        trader._event("partial_rebalance", message, ts)
    if trader.notifier is not None:
        try:
            trader.notifier.notify("partial_rebalance", message, mode=trader.config.mode,
                                   failed=",".join(b.symbol for b, _ in failed))
        except Exception as error:  # noqa: BLE001 - an alert never stops trading
            log.warning("partial rebalance alert failed: %r", error)


def answer_fields(answer: PortfolioAnswer | None, symbol: str) -> dict[str, Any]:
    """What the bars journal keeps of the answer for one coin."""
    if answer is None:
        return {"action": "", "version": "", "target": NAN, "reason": ""}
    target = answer.weights.get(symbol, NAN)
    action = "" if target != target else "long" if target > 0 else "short" if target < 0 \
        else "flat"
    return {"action": action, "version": answer.model_version, "target": target,
            "reason": answer.reason}
