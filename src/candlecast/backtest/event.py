"""The event-driven path: the full risk engine, bar by bar, exactly as the live trader runs it.

Per bar: (1) the pending order fills at the open (cost model, partial fills); (2) resting stops
and targets are checked against the bar's range, stop first; (3) at the close, funding is paid,
:meth:`RiskEngine.on_bar_close` runs (limits, trailing stops, time stops) and a signal change
asks :meth:`RiskEngine.decide_entry`; orders from (3) fill at the next open.

Speed: while the account is flat with nothing pending, no risk rule can act until the signal
next changes (the engine's day bookkeeping is lazy, and a flat account's equity is constant),
so the loop jumps straight to that bar. Bars in a trade are all visited.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.inputs import Market, align, funding_array, prepare_market, signal_array
from candlecast.backtest.ledger import FillLog, curves, order_step, signal_reason, snap
from candlecast.backtest.result import BacktestResult
from candlecast.risk import Action, Reason, RiskConfig, RiskEngine
from candlecast.risk.state import NS_PER_DAY

NAN = math.nan
_TOL = 1e-12
_SIGNAL = (Reason.SIGNAL_ENTRY, Reason.SIGNAL_EXIT)


def _optional(values: object | None, market: Market, name: str) -> np.ndarray:
    if values is None:
        return np.full(market.n, NAN)
    return align(values, market, name)


def run_event_driven(
    candles: pd.DataFrame | Market,
    signal: object,
    risk: RiskConfig | RiskEngine | None = None,
    costs: CostConfig | None = None,
    config: BacktestConfig | None = None,
    *,
    atr: object | None = None,
    volatility: object | None = None,
    probability: object | None = None,
    payoff_ratio: object | None = None,
    funding: object | None = None,
    kill_at: pd.Timestamp | None = None,
    name: str = "strategy",
    quiet_ok: bool = True,
) -> BacktestResult:
    """Backtest -1/0/+1 ``signal`` through the risk engine.

    Per-bar inputs computed by the caller (NaN where unknown, e.g. warm-up): ``atr`` for ATR
    stops and chandelier exits, ``volatility`` (std of one bar's return) for vol targeting,
    ``probability`` (that the signalled side wins) and ``payoff_ratio`` for Kelly sizing.
    ``kill_at`` engages the kill switch at the close of the first bar at or after that time.
    Every risk decision (enter/reject/exit/halt with its reason) is in ``result.decisions``.
    ``quiet_ok=False`` calls the engine on every bar in a trade instead of skipping the bars
    its :class:`~candlecast.risk.QuietBand` proves quiet (same results, slower; for tests).
    """
    cfg = config if config is not None else BacktestConfig()
    model = CostModel(costs)
    market = candles if isinstance(candles, Market) else prepare_market(candles)
    if isinstance(risk, RiskEngine):
        engine = risk
        if engine.bar_ns != market.bar_ns:
            raise ValueError(f"risk engine timeframe {engine.timeframe!r} does not match the "
                             f"candles' {market.timeframe!r}")
    else:
        engine = RiskEngine(risk, market.timeframe)
    sig_arr = signal_array(signal, market, cfg.allow_short)
    atr_arr = _optional(atr, market, "atr")
    vol_arr = _optional(volatility, market, "volatility")
    prob_arr = _optional(probability, market, "probability")
    pay_arr = _optional(payoff_ratio, market, "payoff_ratio")
    fund_arr = funding_array(funding, market, model.funding_per_bar(market.bar_ns / 1e9))
    n, symbol = market.n, market.symbol

    request_bars = np.flatnonzero(np.diff(sig_arr, prepend=np.int8(0)))
    if cfg.reenter:
        request_bars = np.union1d(request_bars, np.flatnonzero(sig_arr))
    kill_bar = n
    if kill_at is not None:
        kill_bar = int(np.searchsorted(market.ts_ns, pd.Timestamp(kill_at).value))
        if kill_bar < n:
            request_bars = np.union1d(request_bars, [kill_bar])
    requests: list[int] = request_bars.tolist()
    n_requests = len(requests)

    o, h, lo, c, v = (market.open.tolist(), market.high.tolist(), market.low.tolist(),
                      market.close.tolist(), market.volume.tolist())
    ts, sig, atr_l = market.ts_ns.tolist(), sig_arr.tolist(), atr_arr.tolist()
    fund = None if fund_arr is None else fund_arr.tolist()

    bar_ns = engine.bar_ns
    bar_no = (market.ts_ns // bar_ns).tolist()
    day_arr = market.ts_ns // NS_PER_DAY
    day_no = day_arr.tolist()
    day_last = np.append(day_arr[1:] != day_arr[:-1], True).tolist()

    state = engine.start(cfg.initial_equity, ts[0])
    log = FillLog()
    rows: list[tuple] = []
    cash, paid, pos = cfg.initial_equity, 0.0, 0.0
    target, pending, reason, order_atr = 0.0, False, "", NAN
    budget: float | None = None
    last_sig, k, t = 0, 0, 0
    reenter = cfg.reenter
    band = None  # the engine's QuietBand for the open position, if any
    b_day = b_bar = 0
    b_low_gt = b_low_ge = b_high_lt = b_high_le = b_atr = b_floor = b_peak = 0.0

    while t < n:
        if pos == 0.0 and not pending:  # idle: jump to the next bar that may act
            while k < n_requests and requests[k] < t:
                k += 1
            if k == n_requests:
                break
            t = requests[k]
        close = c[t]
        inside = False  # the bar's range cannot reach the resting stop / target
        if band is not None and not pending:
            low, high = lo[t], h[t]
            inside = low > b_low_gt and high < b_high_lt
            a = atr_l[t]
            if (inside and high <= b_high_le and low >= b_low_ge and not 0.0 < a < b_atr
                    and day_no[t] == b_day and not day_last[t] and bar_no[t] < b_bar
                    and t != kill_bar):
                fpay = pos * close * fund[t] if fund is not None else 0.0
                if b_floor < cash - (paid + fpay) + pos * close <= b_peak and sig[t] == last_sig:
                    paid += fpay  # a quiet bar: no risk rule can act, nothing to decide
                    t += 1
                    continue
        filled = False
        if pending:  # (1) the open
            if budget is not None:  # an entry sized in quote currency becomes units now
                target, budget = model.units_for_notional(budget, o[t]), None
            step = order_step(model, pos, target, o[t], v[t])
            if step is not None:
                side, qty, price, fee, slip = step
                state, _ = engine.on_fill(state, symbol, side, qty, price, fee, ts[t], order_atr)
                before, pos = pos, snap(pos + side * qty, qty)
                cash -= side * qty * price + fee
                why = signal_reason(before, pos) if reason in _SIGNAL else reason
                log.add(t, side, qty, price, o[t], fee, slip, why, pos, cash)
                filled = True
            if abs(target - pos) <= _TOL * max(1.0, abs(target)):
                pending = False
        if pos != 0.0 and not inside:  # (2) resting stop / target
            p = state.positions.get(symbol)
            if p is not None and (p.stop == p.stop or p.target == p.target):
                hit = engine.check_exit(p, o[t], h[t], lo[t])
                if hit is not None:
                    level, why, is_target = hit
                    side = -1 if pos > 0 else 1
                    qty, price, fee, slip = (model.maker(abs(pos), level, v[t]) if is_target
                                             else model.taker(side, abs(pos), level, v[t]))
                    rows.append((t, Action.EXIT, why, side, abs(pos), (), f"level {level:.6g}"))
                    if qty > 0.0:
                        state, _ = engine.on_fill(state, symbol, side, qty, price, fee, ts[t])
                        pos = snap(pos + side * qty, qty)
                        cash -= side * qty * price + fee
                        log.add(t, side, qty, price, level, fee, slip, why, pos, cash)
                        filled = True
                    target, budget, pending, reason = 0.0, None, pos != 0.0, why
        # (3) the close
        if fund is not None and pos != 0.0:
            paid += pos * close * fund[t]
        equity = cash - paid + pos * close
        if t == kill_bar:
            state = engine.kill(state, "kill_at")
        if pos != 0.0 or filled or t == kill_bar:
            state, decisions = engine.on_bar_close(
                state, ts[t], equity, {symbol: (h[t], lo[t], close, atr_l[t])})
            for d in decisions:
                rows.append((t, d.action, d.reason, d.side, d.qty, d.notes, d.detail))
                if d.action == Action.EXIT:
                    target, budget, pending, reason = 0.0, None, pos != 0.0, d.reason
            if state.kill_switch and pos == 0.0:
                pending, budget = False, None
            band = engine.quiet_band(state, symbol) if pos != 0.0 and quiet_ok else None
            if band is not None:
                b_day, b_low_gt, b_low_ge, b_high_lt, b_high_le, b_atr, b_floor, b_peak, b_bar = (
                    band)
        s = sig[t]
        if t < n - 1 and (s != last_sig or (reenter and s != 0 and pos == 0.0 and not pending)):
            want = (budget if budget is not None else target) if pending else pos
            current = 1 if want > 0 else -1 if want < 0 else 0
            if current != s:
                if current != 0:
                    rows.append((t, Action.EXIT, Reason.SIGNAL_EXIT, -current, abs(pos), (), ""))
                    target, budget, pending, reason = 0.0, None, pos != 0.0, Reason.SIGNAL_EXIT
                if s != 0:
                    d = engine.decide_entry(
                        state, symbol, s, ts[t], equity, close, atr_l[t], float(vol_arr[t]),
                        float(prob_arr[t]), float(pay_arr[t]), replacing=pos != 0.0)
                    rows.append((t, d.action, d.reason, s, d.qty, d.notes, d.detail))
                    if d.action == Action.ENTER:
                        budget, pending, reason, order_atr = (s * d.qty * close, True, d.reason,
                                                              atr_l[t])
        last_sig = s
        t += 1

    equity_curve, position, funding_paid = curves(n, log, market.close, cfg.initial_equity,
                                                  fund_arr)
    result = BacktestResult(name, symbol, market.timestamps, market.close, equity_curve,
                            position, funding_paid, cfg.initial_equity, market.bars_per_year, log,
                            [(b, str(a), str(r), sd, q, ",".join(map(str, nt)), dt)
                             for b, a, r, sd, q, nt, dt in rows])
    result.final_risk_state = state  # type: ignore[attr-defined]
    return result
