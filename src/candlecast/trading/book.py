"""Plain values the trader keeps per symbol and per account, persisted after every candle.

A :class:`SymbolBook` holds the position and the *working order*: the position the last decision
asked for (``target`` in units, or ``budget`` in quote currency for an entry not yet converted
to units at a fill price), how it is worked (``order_style`` market or limit; a limit order's
price, last bar and what happens at expiry) and the candle count the limit expiry and the
policy's ``bars_held`` are measured in. These are exactly the loop variables of the target
backtester (:func:`candlecast.backtest.targets.run_targets`: ``pos``, the
:class:`~candlecast.backtest.execution.WorkingOrder`, ``t``, ``entry_bar``), which is what makes
a paper replay reproduce a backtest.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from candlecast.backtest.execution import WorkingOrder

NAN = math.nan
_NAN_FIELDS = ("order_atr", "last_close", "order_limit", "target_position")


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
    reason: str = ""  # why the working order exists (target:enter_long, stop_loss, ...)
    order_atr: float = NAN  # ATR when the entry was decided (initial ATR stop at the fill)
    order_style: str = "market"  # "market" | "limit"
    order_limit: float = NAN  # a limit order's price
    order_last_bar: int = -1  # the last candle (``bars`` count) a limit order may fill on
    order_on_expire: str = "cancel"  # "cancel" | "market": a limit order's rest at expiry
    order_id: str = ""  # client id of the working order
    order_new: bool = False  # the working order was (re)decided during the current candle
    order_filled: float = 0.0  # live: units of the working order filled so far
    order_cost: float = 0.0  # live: quote value filled so far
    order_fee: float = 0.0  # live: fees reported so far
    # live: "new" (not sent), "open", "closed", "unknown", "skipped", "rejected", ...;
    # paper: the fill rule's status after the last candle ("working", "filled", "expired", ...)
    order_status: str = ""
    order_exchange_id: str = ""  # live: the exchange's id of the working order
    bars: int = 0  # candles processed so far = the index of the next candle (backtest ``t``)
    entry_bar: int = -1  # ``bars`` index of the candle whose fill opened the position
    target_position: float = NAN  # the last fresh target of the policy (fraction of equity)
    policy_reason: str = ""  # and its reason
    last_ts: int | None = None  # open time (ns) of the last processed candle
    seen_ts: int | None = None  # open time (ns) of the last candle received (even if rejected)
    last_close: float = NAN

    def goal(self, price: float) -> float:
        """Units the book is heading to: the working order's goal (a budget converted at
        ``price``), else the position."""
        if not self.pending:
            return self.pos
        return self.target if self.budget is None else self.budget / price

    def bars_held(self) -> int:
        """Candles since the fill that opened the position (0 when flat), at the current one."""
        return self.bars - self.entry_bar if self.entry_bar >= 0 else 0

    def set_order(self, target: float, budget: float | None, reason: str, order_id: str,
                  pending: bool, atr: float = NAN, style: str = "market", limit: float = NAN,
                  last_bar: int = -1, on_expire: str = "cancel") -> None:
        """Replace the working order (the previous one is cancelled by the caller/broker)."""
        self.target, self.budget, self.reason, self.pending = target, budget, reason, pending
        self.order_atr = atr
        self.order_style, self.order_limit = style, limit
        self.order_last_bar, self.order_on_expire = last_bar, on_expire
        self.order_id, self.order_new = order_id, True
        self.order_filled = self.order_cost = self.order_fee = 0.0
        self.order_status, self.order_exchange_id = "new", ""

    def working_order(self) -> WorkingOrder:
        """The working order as the shared fill rules see it."""
        return WorkingOrder(self.order_style, self.target, self.budget, self.reason,  # type: ignore[arg-type]
                            self.order_limit, self.order_last_bar, self.order_on_expire,
                            self.order_atr)

    def take_order(self, order: WorkingOrder) -> None:
        """Write back what the fill rules changed (budget -> units, limit -> market)."""
        self.target, self.budget = order.target, order.budget
        self.order_style, self.order_limit = order.style, order.limit

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in _NAN_FIELDS:
            if isinstance(out[key], float) and math.isnan(out[key]):
                out[key] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SymbolBook:
        known = {f.name for f in fields(cls)}
        raw = {k: v for k, v in data.items() if k in known}
        for key in _NAN_FIELDS:
            if raw.get(key) is None:
                raw[key] = NAN
        return cls(**raw)


def working_order_view(book: dict[str, Any]) -> dict[str, Any] | None:
    """A stored book's working order for people (``trade status``, dashboards), or ``None``.

    ``bars_left``: candles a limit order may still fill on (``None`` for a market order);
    ``remaining``: units still to trade (``None`` while an entry is a quote ``budget``).
    """
    if not book.get("pending"):
        return None
    limit = book.get("order_style") == "limit"
    budget = book.get("budget")
    remaining = None if budget is not None else float(book.get("target", 0.0)) - float(
        book.get("pos", 0.0))
    goal = budget if budget is not None else remaining or 0.0
    return {
        "symbol": book.get("symbol"), "client_id": book.get("order_id"),
        "style": book.get("order_style", "market"),
        "side": "buy" if goal > 0 else "sell" if goal < 0 else "",
        "limit_price": book.get("order_limit") if limit else None,
        "bars_left": max(0, int(book.get("order_last_bar", -1)) - int(book.get("bars", 0)) + 1)
        if limit else None,
        "on_expire": book.get("order_on_expire") if limit else None,
        "remaining": remaining, "budget": budget, "target": book.get("target"),
        "reason": book.get("reason"), "status": book.get("order_status"),
    }


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
