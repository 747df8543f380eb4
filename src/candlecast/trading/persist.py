"""The trader's session state and how it is saved to / restored from the :class:`StateStore`.

A :class:`Session` is everything a tick changes: the account, each symbol's book, the risk
engine's state, each symbol's feature engine, plus the recent candles the ``predict`` endpoint
needs. A fresh session primes its feature engines with ``priming_bars`` candles of history; a
stored one is restored exactly (feature engines bit for bit) after checking that the settings
that shaped it (the fingerprint) have not changed.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.features import FeatureConfig, IncrementalFeatureEngine, priming_bars
from candlecast.risk import RiskConfig, RiskState
from candlecast.trading.book import Account, SymbolBook
from candlecast.trading.candles import Bar
from candlecast.trading.config import TradeConfig
from candlecast.trading.feeds import CandleFeed
from candlecast.trading.store import StateStore

#: the books' format: 2 = target positions with working (market or limit) orders and candle
#: counts; 1 (no key) = the -1/0/+1 signal trader's books
STATE_FORMAT = 2


def fingerprint(config: TradeConfig, risk: RiskConfig, costs: CostConfig,
                backtest: BacktestConfig, features: FeatureConfig) -> dict[str, Any]:
    """What must not change between runs on one state database (JSON-normalised)."""
    trade = {k: getattr(config, k) for k in ("mode", "strategy_id", "exchange", "timeframe")}
    if config.decision != "policy":  # one book of many coins: never mixed with per-coin state
        trade["decision"] = config.decision
    value = {
        "state_format": STATE_FORMAT,
        "trade": trade | {"symbols": list(config.symbols)},
        "risk": risk.model_dump(mode="json"), "costs": costs.model_dump(mode="json"),
        "backtest": backtest.model_dump(mode="json"),
        "features": features.model_dump(mode="json"),
    }
    return json.loads(json.dumps(value))


@dataclass
class Session:
    account: Account
    books: dict[str, SymbolBook]
    risk_state: RiskState | None
    engines: dict[str, IncrementalFeatureEngine]
    recent: dict[str, deque[Bar]]


def new_session(config: TradeConfig, features: FeatureConfig, feed: CandleFeed,
                initial_equity: float) -> Session:
    """A fresh session: feature engines primed from the feed's history before the first
    traded candle (and each book marked as having consumed that history)."""
    n = priming_bars(features)
    books = {s: SymbolBook(s) for s in config.symbols}
    engines, recent = {}, {}
    for sym in config.symbols:
        engine = IncrementalFeatureEngine(features, config.timeframe)
        history = feed.history(sym, n, None)
        for bar in history:
            engine.update_values(*bar)
        engines[sym] = engine
        recent[sym] = deque(history, maxlen=config.predict_candles)
        if history:  # consumed by the features: the first traded candle comes after it
            books[sym].last_ts = history[-1].ts
    return Session(Account(cash=initial_equity), books, None, engines, recent)


def load_session(store: StateStore, config: TradeConfig, expected: dict[str, Any]) -> Session:
    """The stored session; ``ValueError`` naming the sections whose settings changed."""
    stored = store.get("fingerprint") or {}
    if stored != expected:
        if stored.get("state_format") != STATE_FORMAT:
            raise ValueError(
                f"state {store.path} was written by an older trader (format "
                f"{stored.get('state_format', 1)}, -1/0/+1 signals; this one trades target "
                f"positions, format {STATE_FORMAT}); use a new trade.state_db")
        changed = sorted(k for k in expected if stored.get(k) != expected[k])
        raise ValueError(
            f"state {store.path} was written with different settings ({', '.join(changed)}); "
            "use a new trade.state_db or restore the settings")
    raw_risk = store.get("risk_state")
    bars = store.frame("bars")
    recent = {}
    for sym in config.symbols:
        rows = bars[bars["symbol"] == sym].tail(config.predict_candles)
        recent[sym] = deque((Bar(int(r.ts), r.open, r.high, r.low, r.close, r.volume)
                             for r in rows.itertuples()), maxlen=config.predict_candles)
    return Session(
        account=Account.from_dict(store.get("account")),
        books={s: SymbolBook.from_dict(store.get(f"book:{s}")) for s in config.symbols},
        risk_state=None if raw_risk is None else RiskState.from_dict(raw_risk),
        engines={s: IncrementalFeatureEngine.from_state(store.get_blob(f"features:{s}"))
                 for s in config.symbols},
        recent=recent,
    )


def save_session(store: StateStore, session: Session) -> None:
    """Write the session (call inside the tick's transaction)."""
    store.put("account", session.account.to_dict())
    for sym, book in session.books.items():
        store.put(f"book:{sym}", book.to_dict())
        store.put_blob(f"features:{sym}", session.engines[sym].state_dict())
    store.put("risk_state", None if session.risk_state is None
              else session.risk_state.to_dict())
