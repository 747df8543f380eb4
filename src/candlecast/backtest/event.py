"""The event-driven path: the full risk engine, bar by bar, exactly as the live trader runs it.

Per bar: (1) the pending order fills at the open (cost model, partial fills); (2) resting stops
and targets are checked against the bar's range, stop first; (3) at the close, funding is paid,
:meth:`RiskEngine.on_bar_close` runs (limits, trailing stops, time stops) and a signal change
asks :meth:`RiskEngine.decide_entry`; orders from (3) fill at the next open.

Speed, with the same results to the last bit (tested against ``quiet_ok=False``):

* while the account is flat with nothing pending, no risk rule can act until the next entry
  signal (the engine's day bookkeeping is lazy, and a flat account's equity is constant), so
  the loop jumps straight to that bar;
* while it holds a position with no order working, :meth:`RiskEngine.hold` advances through
  the bars where (2) and (3) would only move levels, up to the first bar where a stop or
  target is touched, a limit or time stop acts, or the signal changes; that bar runs through
  the per-bar calls, so every decision still comes from them;
* fills go into typed arrays and decisions into tuples of plain numbers and strings, so a long
  run keeps no per-fill float objects or enum references alive (frames are built on first
  access).
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
from candlecast.risk import Action, HoldBars, Reason, RiskConfig, RiskEngine
from candlecast.risk.hold import mirrored

NAN = math.nan
_TOL = 1e-12
_SIGNAL = ("signal_entry", "signal_exit")
# Fills and decisions are recorded with plain strings, not the engine's enum members: a tuple
# of plain numbers and strings is dropped from the garbage collector's lists at its first
# collection, while tens of thousands of tuples holding enum members would stay tracked and
# make full collections (a sizeable share of a million-bar run) traverse them.
_PLAIN: dict[str, str] = {m: m.value for m in (*Action, *Reason)}
_ENTER, _EXIT, _SIGNAL_EXIT = "enter", "exit", "signal_exit"


def _optional(values: object | None, market: Market, name: str) -> np.ndarray:
    if values is None:  # all NaN, as a read-only view of one number (no n-element array)
        return np.broadcast_to(np.float64(NAN), (market.n,))
    return align(values, market, name)


def _elements(values: np.ndarray) -> memoryview:
    """The array's elements, read one at a time as Python numbers (a memoryview: ``tolist``
    of a million-bar array would cost more than the whole backtest)."""
    return memoryview(values)  # type: ignore[arg-type]


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
    ``quiet_ok=False`` calls check_exit and on_bar_close on every bar in a trade instead of
    letting :meth:`RiskEngine.hold` advance through the bars where nothing happens (the same
    results, slower: the reference the fast path is tested against).
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

    # bars where a flat account may act: an entry signal (a change to a non-zero signal, or
    # any non-zero signal with reenter) or the kill switch; in a trade, every signal change
    change_bars = np.flatnonzero(np.diff(sig_arr, prepend=np.int8(0)))
    request_bars = (np.flatnonzero(sig_arr) if cfg.reenter
                    else change_bars[sig_arr[change_bars] != 0])
    kill_bar = n
    if kill_at is not None:
        kill_bar = int(np.searchsorted(market.ts_ns, pd.Timestamp(kill_at).value))
        if kill_bar < n:
            request_bars = np.union1d(request_bars, [kill_bar])
    requests: list[int] = request_bars.tolist()
    changes: list[int] = change_bars.tolist()
    n_changes = len(changes)
    n_requests = len(requests)

    o, h, lo, c, v, ts, atr_l, vol, prob, pay, sig = (_elements(x) for x in (
        market.open, market.high, market.low, market.close, market.volume, market.ts_ns,
        atr_arr, vol_arr, prob_arr, pay_arr, sig_arr))
    fund = None if fund_arr is None else _elements(fund_arr)
    bars = HoldBars(ts, h, lo, c, atr_l, fund)
    if sig_arr.min() < 0:  # shorts: the engine holds them in the mirrored bars
        bars = bars._replace(mirror=mirrored(bars))

    state = engine.start(cfg.initial_equity, ts[0])
    log = FillLog()
    rows: list[tuple] = []  # decisions
    cash, paid, pos = cfg.initial_equity, 0.0, 0.0
    target, pending, reason, order_atr = 0.0, False, "", NAN
    budget: float | None = None
    last_sig, k, j, t = 0, 0, 0, 0  # k, j: next request / signal change (t only grows)
    reenter = cfg.reenter
    on_fill, on_bar_close, check_exit, decide_entry, hold = (
        engine.on_fill, engine.on_bar_close, engine.check_exit, engine.decide_entry, engine.hold)
    add_fill, add_row = log.add, rows.append

    while t < n:
        if pos == 0.0 and not pending:  # idle: jump to the next bar that may act
            while k < n_requests and requests[k] < t:
                k += 1
            if k == n_requests:
                break
            t = requests[k]
            last_sig = sig[t - 1] if t > 0 else 0  # the bars jumped over had no entry signal
        close = c[t]
        filled = False
        if pending:  # (1) the open
            if budget is not None:  # an entry sized in quote currency becomes units now
                target, budget = model.units_for_notional(budget, o[t]), None
            step = order_step(model, pos, target, o[t], v[t])
            if step is not None:
                side, qty, price, fee, slip = step
                state, _ = on_fill(state, symbol, side, qty, price, fee, ts[t], order_atr)
                before, pos = pos, snap(pos + side * qty, qty)
                cash -= side * qty * price + fee
                why = signal_reason(before, pos) if reason in _SIGNAL else reason
                add_fill(t, side, qty, price, o[t], fee, slip, why, pos, cash)
                filled = True
            if abs(target - pos) <= _TOL * max(1.0, abs(target)):
                pending = False
                if pos != 0.0 and quiet_ok:  # in a trade: the engine holds from this bar
                    while j < n_changes and changes[j] < t:
                        j += 1
                    end = changes[j] if j < n_changes else n
                    state, u, paid = hold(state, symbol, bars, t,
                                          kill_bar if t <= kill_bar < end else end,
                                          cash, pos, paid)
                    if u > t:
                        t = u
                        continue
        if pos != 0.0:  # (2) resting stop / target
            p = state.positions.get(symbol)
            if p is not None and (p.stop == p.stop or p.target == p.target):
                hit = check_exit(p, o[t], h[t], lo[t])
                if hit is not None:
                    level, why, is_target = hit
                    why = _PLAIN[why]
                    side = -1 if pos > 0 else 1
                    qty, price, fee, slip = (model.maker(abs(pos), level, v[t]) if is_target
                                             else model.taker(side, abs(pos), level, v[t]))
                    add_row((t, _EXIT, why, side, abs(pos), "", level))
                    if qty > 0.0:
                        state, _ = on_fill(state, symbol, side, qty, price, fee, ts[t])
                        pos = snap(pos + side * qty, qty)
                        cash -= side * qty * price + fee
                        add_fill(t, side, qty, price, level, fee, slip, why, pos, cash)
                        filled = True
                    target, budget, pending, reason = 0.0, None, pos != 0.0, why
        # (3) the close
        if fund is not None and pos != 0.0:
            paid += pos * close * fund[t]
        equity = cash - paid + pos * close
        if t == kill_bar:
            state = engine.kill(state, "kill_at")
        if pos != 0.0 or filled or t == kill_bar:
            state, decisions = on_bar_close(state, ts[t], equity,
                                            {symbol: (h[t], lo[t], close, atr_l[t])})
            for d in decisions:
                add_row((t, _PLAIN[d.action], _PLAIN[d.reason], d.side, d.qty,
                             ",".join(d.notes), d.detail))
                if d.action == _EXIT:
                    target, budget, pending, reason = 0.0, None, pos != 0.0, _PLAIN[d.reason]
            if state.kill_switch and pos == 0.0:
                pending, budget = False, None
        s = sig[t]
        if t < n - 1 and (s != last_sig or (reenter and s != 0 and pos == 0.0 and not pending)):
            want = (budget if budget is not None else target) if pending else pos
            current = 1 if want > 0 else -1 if want < 0 else 0
            if current != s:
                if current != 0:
                    add_row((t, _EXIT, _SIGNAL_EXIT, -current, abs(pos), "", ""))
                    target, budget, pending, reason = 0.0, None, pos != 0.0, _SIGNAL_EXIT
                if s != 0:
                    d = decide_entry(state, symbol, s, ts[t], equity, close, atr_l[t], vol[t],
                                     prob[t], pay[t], NAN, None, pos != 0.0)
                    why = _PLAIN[d.reason]
                    add_row((t, _PLAIN[d.action], why, s, d.qty,
                                 ",".join(d.notes) if d.notes else "", d.detail))
                    if d.action == _ENTER:
                        budget, pending, reason, order_atr = (s * d.qty * close, True, why,
                                                              atr_l[t])
        last_sig = s
        t += 1
        if pos != 0.0 and not pending and quiet_ok and t < n:
            # in a trade with no order working: the engine advances through the bars where
            # nothing can happen, up to the next signal change (or the kill bar)
            while j < n_changes and changes[j] < t:
                j += 1
            end = changes[j] if j < n_changes else n
            state, t, paid = hold(state, symbol, bars, t,
                                  kill_bar if t <= kill_bar < end else end, cash, pos, paid)

    equity_curve, position, funding_paid = curves(n, log, market.close, cfg.initial_equity,
                                                  fund_arr)
    result = BacktestResult(name, symbol, market.timestamps, market.close, equity_curve,
                            position, funding_paid, cfg.initial_equity, market.bars_per_year, log,
                            rows)
    result.final_risk_state = state  # type: ignore[attr-defined]
    return result
