"""Plain values the trader keeps per symbol and per account, persisted after every candle.

A :class:`SymbolBook` holds the position and the *working order*: the position the last decision
asked for (``target`` in units, or ``budget`` in quote currency for an entry not yet converted
to units at a fill price). These are exactly the loop variables of the backtester's event path
(``pos, target, budget, pending, reason, order_atr, last_sig``), which is what makes a paper
replay reproduce a backtest.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

NAN = math.nan


def client_order_id(strategy: str, series_key: str, ts_ns: int, intent: str) -> str:
    """A deterministic exchange client order id: the same decision always gets the same id, so
    a restarted trader (or a retry after a timeout) can ask the exchange whether it already
    placed it. ``<strategy[:10]>-<20 hex>``: at most 31 characters of ``[A-Za-z0-9_-]``, within
    every major exchange's limit (Binance: 36)."""
    digest = hashlib.sha256(f"{strategy}|{series_key}|{ts_ns}|{intent}".encode()).hexdigest()
    return f"{order_id_prefix(strategy)}{digest[:20]}"


def order_id_prefix(strategy: str) -> str:
    return f"{strategy[:10]}-"


@dataclass
class SymbolBook:
    """Position and working order of one symbol."""

    symbol: str
    pos: float = 0.0  # signed base units
    pending: bool = False  # a working order exists
    target: float = 0.0  # units the working order moves the position to
    budget: float | None = None  # entry notional (quote, signed) until converted to units
    reason: str = ""  # why the working order exists (signal_entry, stop_loss, ...)
    order_atr: float = NAN  # ATR when the entry was decided (initial ATR stop at the fill)
    order_id: str = ""  # client id of the working order
    order_new: bool = False  # the working order was (re)decided during the current candle
    order_filled: float = 0.0  # live: units of the working order filled so far
    order_cost: float = 0.0  # live: quote value filled so far
    order_fee: float = 0.0  # live: fees reported so far
    order_status: str = ""  # live: "new" (not sent), "open", "closed", "unknown", "skipped", ...
    order_exchange_id: str = ""  # live: the exchange's id of the working order
    last_sig: int = 0
    last_ts: int | None = None  # open time (ns) of the last processed candle
    seen_ts: int | None = None  # open time (ns) of the last candle received (even if rejected)
    last_close: float = NAN

    @property
    def wish(self) -> float:
        """The position the book is heading to: the working order's goal, else the position."""
        if not self.pending:
            return self.pos
        return self.budget if self.budget is not None else self.target

    def set_order(self, target: float, budget: float | None, reason: str, order_id: str,
                  pending: bool, atr: float = NAN) -> None:
        """Replace the working order (the previous one is cancelled by the caller/broker)."""
        self.target, self.budget, self.reason, self.pending = target, budget, reason, pending
        self.order_atr = atr
        self.order_id, self.order_new = order_id, True
        self.order_filled = self.order_cost = self.order_fee = 0.0
        self.order_status, self.order_exchange_id = "new", ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("order_atr", "last_close"):
            if isinstance(out[key], float) and math.isnan(out[key]):
                out[key] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SymbolBook:
        raw = dict(data)
        for key in ("order_atr", "last_close"):
            if raw.get(key) is None:
                raw[key] = NAN
        return cls(**raw)


@dataclass
class Account:
    """Account-level money: ``cash`` (quote currency) and funding paid so far."""

    cash: float
    funding_paid: float = 0.0
    started: bool = False  # the risk state exists (first candle processed)
    killed: bool = False  # the kill switch was handled; trading is halted
    kill_reason: str = ""
    signal_failures: int = 0  # consecutive candles without a fresh signal

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        return cls(**data)


@dataclass(frozen=True)
class Fill:
    """One execution: ``side`` +1 bought / -1 sold ``qty`` units at ``price`` (costs included),
    ``fee`` in quote currency, ``slippage`` = money lost against ``ref_price``."""

    client_id: str
    symbol: str
    ts: int
    side: int
    qty: float
    price: float
    ref_price: float
    fee: float
    slippage: float
    reason: str


@dataclass
class RunSummary:
    """How :meth:`Trader.run` ended: ``status`` is ``ended`` (feed exhausted), ``stopped``
    (SIGTERM/SIGINT), ``killed`` (kill switch handled) or ``max_ticks``."""

    status: str
    ticks: int = 0
    fills: int = 0
    equity: float = NAN

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ticks": self.ticks, "fills": self.fills,
                "equity": self.equity}
