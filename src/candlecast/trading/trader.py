"""The trader: each new closed candle -> validate -> features (+ Feast) -> policy target -> orders.

A tick (the candles of all traded symbols with one open time) runs the target backtester
(:func:`candlecast.backtest.targets.run_targets`) bar for bar: (1) the working order works at
this candle (the broker: market at the open, or a passive limit that fills only when the candle
trades through it; a limit order on its last candle expires: cancelled, or its rest sent as a
market order); (2) a resting stop/target the candle touched exits (``check_exit``); (3) at the
close, equity = cash - funding + positions x close and ``on_bar_close`` (limits, trailing and
time stops, kill switch) when a position is open or something filled; (4) the signal service
is asked for this candle with the intended position (signed fraction of equity, a working
order's goal included) and the candles it has been held, and answers the policy's target
position and the execution style; a change becomes a new working order
(:func:`candlecast.trading.targets.plan_target`: entries and growth through
``decide_entry``, reductions and exits always).

A tick's changes (books with their working orders, account, risk and feature state, journals)
commit in one SQLite transaction; live orders go out only after it, with deterministic client
ids, so a crash can neither lose a decision nor duplicate an order. Without a fresh signal
(service down, slow, stale, paused) step 4 is skipped: working orders, stops and limits still
act, nothing new is decided, and the failure is logged, journalled (``events``) and counted
(``account.signal_failures``). The same holds for a tick the feed marks ``stale`` (the
streaming feed while its stream is silent): no signal is asked for, and the tick is a
``stale_data`` event. Every event is also counted by kind in :attr:`Trader.event_counts`
(status and Prometheus metrics).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pandas as pd

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.costs import CostModel
from candlecast.backtest.ledger import snap
from candlecast.backtest.targets import fill_reason
from candlecast.features import FeatureConfig, priming_bars
from candlecast.risk import Action, Reason, RiskConfig, RiskEngine
from candlecast.trading.book import Fill, RunSummary, SymbolBook, client_order_id
from candlecast.trading.broker import EXPIRED, TO_MARKET, Broker
from candlecast.trading.candles import Bar, check_bar
from candlecast.trading.config import TradeConfig
from candlecast.trading.feast_sink import FeatureSink
from candlecast.trading.feeds import END, IDLE, CandleFeed, Tick
from candlecast.trading.ops import StopFlag, read_flag_file
from candlecast.trading.persist import fingerprint, load_session, new_session, save_session
from candlecast.trading.rebalance import answer_fields, rebalance_step, report_partial
from candlecast.trading.reconcile import (
    ReconcilingBroker,
    adopt_account,
    book_fills_while_away,
    resolve_working_orders,
)
from candlecast.trading.signals import Signal, SignalClient, fetch_fresh_signal
from candlecast.trading.store import StateStore
from candlecast.trading.targets import plan_target

if TYPE_CHECKING:
    from candlecast.monitoring.alerts import Notifier

log = logging.getLogger(__name__)
NAN = math.nan
_TOL = 1e-12  # the fill rules' "order reached its target" tolerance
_EXPIRE_DETAIL = "limit order expired; rest cancelled"
_INFO_EVENTS = frozenset({"start", "restart", "pause", "resume", "signal_recovered",
                          "limit_to_market", "stream_subscribing", "stream_connected",
                          "stream_recovered", "backfill"})
#: (the trader's step (4) in portfolio mode lives in trading/rebalance.py)


class Trader:
    """One trading session over ``config.symbols``; see the module docstring for a tick."""

    def __init__(
        self,
        config: TradeConfig,
        *,
        broker: Broker,
        feed: CandleFeed,
        signals: SignalClient,
        store: StateStore,
        risk: RiskConfig | None = None,
        costs: CostConfig | None = None,
        backtest: BacktestConfig | None = None,
        features: FeatureConfig | None = None,
        feature_sink: FeatureSink | None = None,
        stop: StopFlag | None = None,
        sleep: Callable[[float], None] = time.sleep,
        notifier: Notifier | None = None,
    ) -> None:
        config.check_live_allowed()
        if config.is_live != broker.live:
            raise ValueError(f"trade.mode {config.mode!r} does not match the {broker.name} broker")
        self.config = config
        self.risk_config = risk or RiskConfig()
        self.costs = costs or CostConfig()
        self.backtest = backtest or BacktestConfig()
        self.features = features or FeatureConfig()
        self.broker, self.feed, self.signals, self.store = broker, feed, signals, store
        self.sink = feature_sink
        self.stop = stop if stop is not None else StopFlag()
        self.sleep = sleep
        #: alerts (``candlecast.monitoring.alerts``): a risk-limit halt is notified after its commit
        self.notifier = notifier
        self._halts: list[tuple[str, str]] = []
        self.series = {s.symbol: s for s in config.series}
        self.step_ns = int(config.series[0].step.value)
        self.engine = RiskEngine(self.risk_config, config.timeframe)
        self.funding_rate = CostModel(self.costs).funding_per_bar(self.step_ns / 1e9)
        self.paused = False
        self._events: list[tuple[str, str, int | None]] = []
        #: events of this process by kind (the feed's included), for status and metrics
        self.event_counts: Counter[str] = Counter()
        self.latencies_s: deque[float] = deque(maxlen=100_000)
        self._closed: dict[str, str] = {}  # client id -> final status, journalled at tick end
        for edge in (broker, feed):  # broker/feed reports go to the trader's journal
            if hasattr(edge, "on_event"):
                edge.on_event = self._event  # type: ignore[union-attr]
        self._load_or_init()

    def __repr__(self) -> str:
        return (f"Trader(mode={self.config.mode!r}, symbols={list(self.config.symbols)}, "
                f"broker={self.broker!r})")

    # ------------------------------------------------------------------ state
    def _load_or_init(self) -> None:
        expected = fingerprint(self.config, self.risk_config, self.costs, self.backtest,
                               self.features)
        fresh = not self.store.has_state()
        session = (new_session(self.config, self.features, self.feed,
                               self.backtest.initial_equity) if fresh
                   else load_session(self.store, self.config, expected))
        self.account, self.books, self.risk_state = (session.account, session.books,
                                                     session.risk_state)
        self.fe, self._recent = session.engines, session.recent
        self._session = session
        if fresh:
            self._event("start", f"new {self.config.mode} session; features primed with "
                        f"{priming_bars(self.features)} candles per symbol")
        else:
            self._event("restart", f"resumed from {self.store.path}: " + ", ".join(
                f"{s} after {self._when(b.last_ts)}" for s, b in self.books.items()))
        with self._tx():
            if fresh:
                self.store.put("fingerprint", expected)
                self._save()

    def _save(self) -> None:
        self._session.account, self._session.risk_state = self.account, self.risk_state
        save_session(self.store, self._session)

    def _event(self, kind: str, message: str, ts: int | None = None) -> None:
        """Log an event now; it is journalled with the next committed transaction."""
        level = logging.INFO if kind in _INFO_EVENTS else logging.WARNING
        log.log(level, "%s: %s", kind, message)
        self._events.append((kind, message, ts))
        self.event_counts[kind] += 1

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """A store transaction that also journals the events logged so far."""
        with self.store.transaction():
            yield
            for kind, message, ts in self._events:
                self.store.add_event(kind, message, ts)
            self._events.clear()

    @staticmethod
    def _when(ts: int | None) -> str:
        return "start" if ts is None else str(pd.Timestamp(ts, tz="UTC"))

    # ------------------------------------------------------------------ live start-up
    def reconcile(self) -> list[str]:
        """Live only: resolve working orders, book their fills, adopt the exchange's balances
        (:mod:`candlecast.trading.reconcile`); returns the broker's notes (none for paper)."""
        if not isinstance(self.broker, ReconcilingBroker):
            return []
        symbols = list(self.config.symbols)
        notes = resolve_working_orders(self.broker, symbols, self.books)
        with self._tx():
            if self.risk_state is not None:
                book_fills_while_away(self.broker, self.books, self.step_ns, self._apply_fill)
            self.risk_state = adopt_account(self.broker.account(symbols), self.account,
                                            self.books, self.engine, self.risk_state,
                                            self._event)
            self._finish_orders(max((b.last_ts or 0) for b in self.books.values()))
            self._save()
        return notes

    # ------------------------------------------------------------------ the loop
    def run(self, max_ticks: int | None = None) -> RunSummary:
        """Process ticks until the feed ends, a stop signal, the kill switch, or ``max_ticks``."""
        summary = RunSummary("ended")
        while True:
            if self.stop:
                summary.status = "stopped"
                break
            self._check_files()
            if self.account.killed and self._all_done():
                summary.status = "killed"
                break
            if max_ticks is not None and summary.ticks >= max_ticks:
                summary.status = "max_ticks"
                break
            tick = self.feed.next_tick({s: _latest(b.last_ts, b.seen_ts)
                                        for s, b in self.books.items()},
                                       self.config.poll_interval_s)
            if tick == END:
                break
            if tick == IDLE or not isinstance(tick, Tick):
                if self._events:  # what the feed reported while waiting, journalled now
                    with self._tx():
                        pass
                continue
            summary.fills += self.process_tick(tick)
            summary.ticks += 1
        summary.equity = self.equity()
        return summary

    def _all_done(self) -> bool:
        if not self.config.flatten_on_kill:
            return all(not b.pending for b in self.books.values())
        return all(b.pos == 0.0 and not b.pending for b in self.books.values())

    def equity(self, bars: dict[str, Bar] | None = None) -> float:
        """Cash - funding + positions marked at ``bars``' closes (else the last known)."""
        value = self.account.cash - self.account.funding_paid
        for sym, book in self.books.items():
            if book.pos != 0.0:
                value += book.pos * (bars[sym].close if bars and sym in bars else book.last_close)
        return value

    def _check_files(self) -> None:
        paused = read_flag_file(self.config.pause_file) is not None
        if paused != self.paused:
            self.paused = paused
            with self._tx():
                self._event("pause" if paused else "resume",
                            "pause file present: signals ignored, stops enforced" if paused
                            else "pause file removed: trading resumed")
        reason = read_flag_file(self.config.kill_switch_file)
        if reason is not None and not self.account.killed:
            self.kill_now(reason or "kill switch file")

    def kill_now(self, reason: str) -> None:
        """Engage the kill switch: cancel working orders, close positions (if configured)."""
        last = max((b.last_ts for b in self.books.values() if b.last_ts is not None),
                   default=0)
        submit = []
        with self._tx():
            self.account.killed, self.account.kill_reason = True, reason
            self._event("kill", f"kill switch: {reason}", last)
            if self.config.flatten_on_kill and self.risk_state is not None:
                self.risk_state = self.engine.kill(self.risk_state, reason[:80])
            for sym, book in self.books.items():
                if book.pending:
                    self._closed[book.order_id] = "canceled"
                    for fill in self.broker.cancel(book, last):
                        self._apply_fill(book, fill, NAN)
                if self.config.flatten_on_kill and book.pos != 0.0:
                    side = -1 if book.pos > 0 else 1
                    self.store.add_decision(last, sym, str(Action.EXIT), str(Reason.KILL_SWITCH),
                                            side, abs(book.pos), "", reason[:200])
                    self._set_order(book, last, 0.0, None, Reason.KILL_SWITCH, True)
                    submit.append(book)
            self._finish_orders(last)
            self._save()
        self._submit(submit)

    # ------------------------------------------------------------------ one tick
    def process_tick(self, tick: Tick) -> int:
        """Process one tick; returns the number of fills booked. Its wall time, from receiving
        the candle to the orders being submitted (signal call included), is appended to
        :attr:`latencies_s` (for benchmarks and monitoring)."""
        started = time.perf_counter()
        ts = tick.ts
        valid: dict[str, Bar] = {}
        for sym, bar in tick.bars.items():
            book = self.books[sym]
            verdict = check_bar(bar, book.last_ts, self.step_ns)
            book.seen_ts = _latest(book.seen_ts, bar.ts)
            if not verdict.ok:
                self._event("bad_candle", f"{sym}: {verdict.rule}: {verdict.reason}", bar.ts)
            elif verdict.missing:
                self._event("gap", f"{sym}: {verdict.reason}", bar.ts)
            if verdict.ok:
                valid[sym] = bar
        if not valid:
            with self._tx():
                self._save()
            return 0
        rows = {sym: self.fe[sym].update_values(*bar) for sym, bar in valid.items()}
        for sym, bar in valid.items():
            self._recent[sym].append(bar)
            if self.sink is not None:
                try:
                    self.sink.write(self.series[sym], bar, rows[sym])
                except Exception as error:  # noqa: BLE001 - reported; trading goes on
                    self._event("feature_store_error", f"{sym}: {error!r:.200}", ts)
        if tick.stale and not (self.paused or self.account.killed):
            self._event("stale_data", f"{tick.stale}: no new positions this candle, stops "
                        "enforced", ts)
        # the signal call needs the position after this candle's fills and exits: it happens
        # inside the tick's transaction, between steps (3) and (4)
        with self._tx():
            n_fills, to_submit = self._trade(ts, valid, rows, tick.stale)
            self._save()
        self._submit(to_submit)
        self._notify_halts()
        self.latencies_s.append(time.perf_counter() - started)
        return n_fills

    def _trade(self, ts: int, valid: dict[str, Bar], rows: dict[str, dict[str, float]],
               stale: str = "") -> tuple[int, list[SymbolBook]]:
        eng, acct, books, store = self.engine, self.account, self.books, self.store
        if self.risk_state is None:
            self.risk_state = eng.start(self.equity(valid), ts)
        n_fills = 0
        filled = False
        for sym, bar in valid.items():  # (1) the working order, (2) resting exits
            book = books[sym]
            if book.pending:
                n = self._work_order(ts, book, bar)
                n_fills, filled = n_fills + n, filled or n > 0
            if book.pos != 0.0:
                pos_risk = self.risk_state.positions.get(sym)
                if pos_risk is not None and (pos_risk.stop == pos_risk.stop
                                             or pos_risk.target == pos_risk.target):
                    hit = eng.check_exit(pos_risk, bar.open, bar.high, bar.low)
                    if hit is not None:
                        level, why, is_target = hit
                        side = -1 if book.pos > 0 else 1
                        store.add_decision(ts, sym, str(Action.EXIT), str(why), side,
                                           abs(book.pos), "", f"level {level:.6g}")
                        self._set_order(book, ts, 0.0, None, why, True)
                        for fill in self.broker.exit_fills(book, level, is_target, bar):
                            self._apply_fill(book, fill, NAN)
                            n_fills, filled = n_fills + 1, True
                        if not self.broker.live:
                            book.pending = book.pos != 0.0
        # (3) the close
        for sym, bar in valid.items():
            books[sym].last_close = bar.close
            if self.funding_rate != 0.0 and books[sym].pos != 0.0:
                acct.funding_paid += books[sym].pos * bar.close * self.funding_rate
        equity = self.equity()
        if filled or any(b.pos != 0.0 for b in books.values()):
            marks = {sym: (bar.high, bar.low, bar.close, rows[sym]["atr"])
                     for sym, bar in valid.items()}
            self.risk_state, decisions = eng.on_bar_close(self.risk_state, ts, equity, marks)
            for d in decisions:
                store.add_decision(ts, d.symbol, str(d.action), str(d.reason), d.side, d.qty,
                                   ",".join(map(str, d.notes)), d.detail)
                if d.action == Action.HALT:
                    self._halts.append((str(d.reason), f"{self._when(ts)}: {d.detail}"))
                if d.action == Action.EXIT and d.symbol in books:
                    book = books[d.symbol]
                    self._set_order(book, ts, 0.0, None, d.reason, book.pos != 0.0)
            if self.risk_state.kill_switch:
                for book in books.values():
                    if book.pos == 0.0:
                        book.pending, book.budget = False, None
        for sym in valid:
            if books[sym].pos == 0.0:
                books[sym].entry_bar = -1
        # (4) the policy's targets
        halted = ("killed" if self.account.killed or self.risk_state.kill_switch
                  else "paused" if self.paused else "stale_data" if stale
                  else "no_equity" if not equity > 0 else "")
        portfolio = self.config.decision == "portfolio"
        if portfolio:  # one answer for the whole book (trading/rebalance.py)
            answer, book_status = ((None, halted) if halted
                                   else rebalance_step(self, ts, valid, rows, equity))
        for sym, bar in valid.items():
            book = books[sym]
            if portfolio:
                f = answer_fields(answer, sym)
                store.add_bar(sym, bar.ts, tuple(bar[1:]), book.pos, f["action"], book_status,
                              f["version"], f["target"], f["reason"])
            else:
                sig, status = (None, halted) if halted else self._target(ts, book, bar,
                                                                         rows[sym], equity)
                store.add_bar(sym, bar.ts, tuple(bar[1:]), book.pos,
                              sig.action if sig is not None else "", status,
                              sig.model_version if sig is not None else "",
                              sig.target_position if sig is not None else NAN,
                              sig.reason if sig is not None else "")
            book.last_ts = bar.ts
            book.bars += 1
        store.add_tick(ts, acct.cash, acct.funding_paid, equity)
        to_submit = [b for b in books.values() if b.order_new and b.pending and self.broker.live]
        self._finish_orders(ts)
        return n_fills, to_submit

    def _work_order(self, ts: int, book: SymbolBook, bar: Bar) -> int:
        """Step (1) for one symbol: the working order's fills at this candle, then its status;
        a limit order past its last candle expires (cancelled, or its rest becomes a market
        order for the next open). Returns the number of fills."""
        fills = self.broker.open_fills(book, bar)
        for fill in fills:
            self._apply_fill(book, fill, book.order_atr)
        status = self.broker.settle(book)
        n = len(fills)
        if (status == "working" and book.order_style == "limit"
                and book.bars >= book.order_last_bar):
            # live: the venue does not expire it for us; cancel it (booking what it filled)
            late = self.broker.cancel(book, bar.ts)
            for fill in late:
                self._apply_fill(book, fill, book.order_atr)
            n += len(late)
            rest = abs(book.target - book.pos) > _TOL * max(1.0, abs(book.target))
            status = ((TO_MARKET if book.order_on_expire == "market" else EXPIRED) if rest
                      else "filled")
        if status == EXPIRED:
            self._closed[book.order_id] = "expired"
            book.pending = False
            self.store.add_decision(ts, book.symbol, "expire", book.reason, 0,
                                    abs(book.target - book.pos), "", _EXPIRE_DETAIL)
        elif status == TO_MARKET:
            self._closed[book.order_id] = "expired"
            self._event("limit_to_market", f"{book.symbol}: limit order {book.order_id} "
                        f"expired; its rest goes out as a market order", ts)
            self._set_order(book, ts, book.target, None, book.reason, True, book.order_atr,
                            tag="to_market")
        return n

    def _target(self, ts: int, book: SymbolBook, bar: Bar, row: dict[str, float],
                equity: float) -> tuple[Signal | None, str]:
        """Step (4) for one symbol: ask for the policy's target given the intended position,
        and turn a change into the new working order."""
        assert self.risk_state is not None
        close = bar.close
        goal = book.goal(close)
        held = book.bars_held()
        if goal != 0.0 and not self.broker.tradeable(book.symbol, abs(goal), close):
            goal, held = 0.0, 0  # dust the venue will not trade counts as flat
        frac = goal * close / equity
        sig, status = self._fresh_signal(book.symbol, bar, frac, held)
        if sig is None:
            return None, status
        if not sig.has_target:
            self._event("no_target", f"{book.symbol}: the service answered no target_position "
                        f"(model {sig.model_version or '?'}); nothing decided", bar.ts)
            return sig, "no_target"
        book.target_position, book.policy_reason = sig.target_position, sig.reason
        plan = plan_target(self.engine, self.risk_state, book.symbol, ts, book.bars,
                           sig.target_position, sig.reason or "service",
                           sig.policy.edge if sig.policy is not None else NAN, frac, book.pos,
                           equity, close, row["atr"], sig.execution, self.backtest.allow_short)
        for action, reason, side, qty, notes, detail in plan.rows:
            self.store.add_decision(ts, book.symbol, action, reason, side, qty, notes, detail)
        order = plan.order
        if order is not None:
            self._set_order(book, ts, order.target, order.budget, order.reason, True, order.atr,
                            style=order.style, limit=order.limit, last_bar=order.last_bar,
                            on_expire=order.on_expire)
        return sig, status

    def _set_order(self, book: SymbolBook, ts: int, target: float, budget: float | None,
                   reason: str, pending: bool, atr: float | None = None, *,
                   style: str = "market", limit: float = NAN, last_bar: int = -1,
                   on_expire: str = "cancel", tag: str = "") -> None:
        """Replace ``book``'s working order (a live open order is cancelled first) and journal
        the new one."""
        if book.order_id:
            done = "filled" if not self.broker.live else (book.order_status or "filled")
            self._closed.setdefault(book.order_id, "replaced" if book.pending else done)
        if book.pending and self.broker.live and book.order_status not in ("new", ""):
            for fill in self.broker.cancel(book, ts):
                self._apply_fill(book, fill, book.order_atr)
        goal = budget if budget is not None else target
        units = (target if budget is None
                 else budget / book.last_close if book.last_close > 0 else budget)
        intent = f"{reason}:{'long' if goal > 0 else 'short' if goal < 0 else 'flat'}"
        if style != "market":
            intent += f":{style}"
        if tag:
            intent += f":{tag}"
        cid = client_order_id(self.config.strategy_id, self.series[book.symbol].key, ts, intent)
        book.set_order(target, budget, str(reason), cid, pending,
                       book.order_atr if atr is None else atr, style, limit, last_bar,
                       on_expire)
        self._closed.pop(cid, None)
        self.store.open_order(cid, book.symbol, ts, intent, units - book.pos, target, budget,
                              str(reason), "new" if self.broker.live else "working",
                              style=style, limit_price=None if math.isnan(limit) else limit)

    def _apply_fill(self, book: SymbolBook, fill: Fill, atr: float) -> None:
        assert self.risk_state is not None
        self.risk_state, _ = self.engine.on_fill(self.risk_state, book.symbol, fill.side,
                                                 fill.qty, fill.price, fill.fee, fill.ts, atr)
        before = book.pos
        book.pos = snap(book.pos + fill.side * fill.qty, fill.qty)
        self.account.cash -= fill.side * fill.qty * fill.price + fill.fee
        if before == 0.0 or (self.broker.live and not self.broker.tradeable(
                book.symbol, abs(before), fill.price)):
            book.entry_bar = book.bars  # opened from flat (or from untradeable dust)
        self.store.record_fill(fill, fill_reason(fill.reason, before, book.pos), book.pos,
                               self.account.cash)

    def _finish_orders(self, ts: int) -> None:
        """Set the final status of orders replaced or completed during this tick."""
        for book in self.books.values():
            book.order_new = False
            if book.order_id and not book.pending:
                done = "filled" if not self.broker.live else (book.order_status or "filled")
                self._closed.setdefault(book.order_id, done)
        self.store.close_orders(self._closed, "cancelled" if self.account.killed
                                else "superseded")
        self._closed.clear()

    def _submit(self, books: list[SymbolBook]) -> None:
        """Live: place the working orders decided in the committed tick (then journal them;
        in portfolio mode a partly placed rebalance is reported)."""
        reports = []
        for book in books:
            if not self.broker.live or not book.pending:
                continue
            report = self.broker.submit(book, book.last_close)
            reports.append((book, report))
            fields = {} if report.price is None else {"limit_price": report.price}
            with self._tx():
                self.store.update_order(book.order_id, status=report.status,
                                        amount=report.amount, exchange_id=report.exchange_id,
                                        detail=report.detail, **fields)
                self._save()
        if self.config.decision == "portfolio":
            report_partial(self, reports)

    # ------------------------------------------------------------------ signals
    def _notify_halts(self) -> None:
        """Alert each risk-limit halt recorded by the tick just committed (never raises)."""
        halts, self._halts = self._halts, []
        if self.notifier is None:
            return
        for reason, detail in halts:
            try:
                self.notifier.notify("trader_halted", f"{self.config.mode} trader halted by a "
                                     f"risk limit: {reason} ({detail})", reason=reason,
                                     detail=detail, mode=self.config.mode,
                                     symbols=",".join(self.config.symbols))
            except Exception as error:  # noqa: BLE001 - an alert never stops trading
                log.warning("halt alert failed: %r", error)

    def _fresh_signal(self, sym: str, bar: Bar, position: float, bars_held: int
                      ) -> tuple[Signal | None, str]:
        """A fresh signal for ``bar`` given the intended ``position`` (fraction of equity) and
        ``bars_held``, or ``None`` (reported and counted) and why not."""
        sig, why = fetch_fresh_signal(self.signals, self.series[sym], bar,
                                      list(self._recent[sym]), self.config, self.sleep,
                                      position, bars_held)
        if sig is not None:
            if self.account.signal_failures:
                self._event("signal_recovered", f"{sym}: fresh signal after "
                            f"{self.account.signal_failures} candle(s) without", bar.ts)
            self.account.signal_failures = 0
            return sig, "ok"
        self.account.signal_failures += 1
        self._event("no_fresh_signal", f"{sym}: {why}; no new positions this candle "
                    f"({self.account.signal_failures} in a row)", bar.ts)
        return None, "unavailable"


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
