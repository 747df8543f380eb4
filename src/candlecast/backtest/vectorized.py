"""The fast path for plain signal strategies: no per-bar Python loop.

At the close of each bar where the signal changes, an order for ``signal x position_fraction x
equity`` (quote currency) is placed; at the next open it is converted to units at that price
(net of fixed costs and taker fee, see :meth:`CostModel.units_for_notional`) and filled with
the shared cost model. Positions are not rebalanced while the signal stays the same. This is
exactly what the event-driven path does with ``RiskConfig.plain()`` (tested).

Two engines, same results (tested against each other):

* linear costs (fees, spread, fixed slippage; no impact, no volume cap, no funding): each fill
  is a linear map of (cash, position), so the whole fill sequence is a prefix product of 2x2
  matrices, computed with a log-depth scan in numpy: no Python loop at all;
* otherwise a loop over ORDERS (one per signal change, plus a step per extra bar a partial fill
  needs); equity per bar is still numpy over the fill log.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.inputs import Market, funding_array, prepare_market, signal_array
from candlecast.backtest.ledger import FillLog, curves, order_step, signal_reason, snap
from candlecast.backtest.result import BacktestResult


def run_vectorized(
    candles: pd.DataFrame | Market,
    signal: object,
    costs: CostConfig | None = None,
    config: BacktestConfig | None = None,
    funding: object | None = None,
    name: str = "strategy",
    use_scan: bool = True,
) -> BacktestResult:
    """Backtest -1/0/+1 ``signal`` (one per candle, decided at that candle's close).

    ``funding`` optionally gives a per-bar funding rate (fraction of notional paid by longs at
    each close), overriding ``costs.funding_rate_8h``. ``use_scan=False`` forces the order loop
    (for tests).
    """
    cfg = config if config is not None else BacktestConfig()
    model = CostModel(costs)
    market = candles if isinstance(candles, Market) else prepare_market(candles)
    sig = signal_array(signal, market, cfg.allow_short)
    fund = funding_array(funding, market, model.funding_per_bar(market.bar_ns / 1e9))
    n = market.n
    change = np.flatnonzero(np.diff(sig, prepend=np.int8(0)))
    change = change[change < n - 1]  # a decision on the last bar never fills
    log = None
    if use_scan and model.linear and fund is None:
        log = _scan_fills(model, market, sig, change, cfg)
    if log is None:
        log = _loop_fills(model, market, sig, change.tolist(), cfg, fund)
    equity, position, funding_paid = curves(n, log, market.close, cfg.initial_equity, fund)
    return BacktestResult(name, market.symbol, market.timestamps, market.close, equity, position,
                          funding_paid, cfg.initial_equity, market.bars_per_year, log)


def _loop_fills(model: CostModel, market: Market, sig: np.ndarray, change: list[int],
                cfg: BacktestConfig, fund: np.ndarray | None) -> FillLog:
    n = market.n
    open_, close, volume = market.open, market.close, market.volume
    fund_cum = None if fund is None else np.concatenate([[0.0], np.cumsum(close * fund)])
    log = FillLog()
    fraction = cfg.position_fraction
    cash, pos, target = cfg.initial_equity, 0.0, 0.0  # cash: fill flows only, no funding
    budget: float | None = None  # quote notional of an order not yet converted to units
    paid, funded = 0.0, 0  # funding paid on bars < funded
    pending, fill_bar = False, 0

    def fill_until(last_bar: int) -> None:
        """Work the pending order at the opens of bars fill_bar..last_bar."""
        nonlocal cash, pos, target, budget, pending, fill_bar, paid, funded
        while pending and fill_bar <= last_bar:
            b = fill_bar
            ref = float(open_[b])
            if budget is not None:
                target, budget = model.units_for_notional(budget, ref), None
            step = order_step(model, pos, target, ref, float(volume[b]))
            if step is not None:
                if fund_cum is not None:  # the old position paid funding up to bar b
                    paid += pos * (fund_cum[b] - fund_cum[funded])
                    funded = b
                side, qty, price, fee, slip = step
                before, pos = pos, snap(pos + side * qty, qty)
                cash -= side * qty * price + fee
                log.add(b, side, qty, price, ref, fee, slip, signal_reason(before, pos), pos,
                        cash)
            if abs(target - pos) <= 1e-12 * max(1.0, abs(target)):
                pending = False
            fill_bar = b + 1

    for d in change:
        fill_until(d)
        if fund_cum is not None:
            paid += pos * (fund_cum[d + 1] - fund_cum[funded])
            funded = d + 1
        price = float(close[d])
        equity = cash - paid + pos * price
        s = int(sig[d])
        target, budget = 0.0, (s * fraction * equity if s else None)
        pending, fill_bar = True, d + 1
    fill_until(n - 1)
    return log


def _prefix_products(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> None:
    """In place: matrices [[a, b], [c, d]][k] become the products M_k ... M_0 (log-depth
    Hillis-Steele scan)."""
    step, k = 1, len(a)
    while step < k:
        a0, b0, c0, d0 = a[:-step].copy(), b[:-step].copy(), c[:-step].copy(), d[:-step].copy()
        a1, b1, c1, d1 = a[step:], b[step:], c[step:], d[step:]
        na = a1 * a0 + b1 * c0
        nb = a1 * b0 + b1 * d0
        nc = c1 * a0 + d1 * c0
        nd = c1 * b0 + d1 * d0
        a[step:], b[step:], c[step:], d[step:] = na, nb, nc, nd
        step *= 2


def _scan_fills(model: CostModel, market: Market, sig: np.ndarray, change: np.ndarray,
                cfg: BacktestConfig) -> FillLog | None:
    """All fills at once for linear costs; ``None`` if equity ever reaches <= 0 at a decision
    (the sign logic below assumes positive equity; the loop handles that case)."""
    log = FillLog()
    if len(change) == 0:
        return log
    fixed, fee_rate = model._fixed, model._taker
    s = sig[change].astype(np.float64)
    prev = np.concatenate([[0.0], s[:-1]])
    sigma = np.sign(s - prev)
    fill_bar = change + 1
    ref = market.open[fill_bar]
    mark = market.close[change]
    price = ref * (1.0 + sigma * fixed)
    alpha = s * cfg.position_fraction / (ref * (1.0 + fixed + fee_rate))
    kappa = price * (1.0 + sigma * fee_rate)
    # x_k = M_k x_{k-1} with x = (cash, position): M = [[1 - ka, k(1 - a m)], [a, a m]]
    a = 1.0 - kappa * alpha
    b = kappa * (1.0 - alpha * mark)
    c = alpha.copy()
    d = alpha * mark
    _prefix_products(a, b, c, d)
    cash = a * cfg.initial_equity
    pos = c * cfg.initial_equity
    pos_before = np.concatenate([[0.0], pos[:-1]])
    cash_before = np.concatenate([[cfg.initial_equity], cash[:-1]])
    if (cash_before + pos_before * mark <= 0).any():
        return None
    qty = np.abs(pos - pos_before)
    reason = np.where(pos_before == 0.0, "signal_entry",
                      np.where(pos == 0.0, "signal_exit", "signal_reverse")).astype(object)
    log.bar = fill_bar
    log.side = sigma.astype(np.int8)
    log.qty = qty
    log.price = price
    log.ref = ref
    log.fee = qty * price * fee_rate
    log.slip = qty * ref * fixed
    log.reason = reason
    log.pos_after = pos
    log.cash_after = cash
    return log
