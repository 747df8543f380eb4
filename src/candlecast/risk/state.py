"""Risk state and decisions: plain values the caller keeps, persists and passes back in.

The engine never mutates a state or position it is given; it returns new objects (so a caller
can ask "what would happen" without committing). The classes are slotted, non-frozen dataclasses
only because building a frozen dataclass costs four times as much and the backtester builds one
per bar in a trade. ``to_dict``/``from_dict`` round-trip through JSON for the live trader.

Times are integers: ``bar`` is an absolute bar number (``timestamp // bar duration``, so the
backtester and the live trader count the same way across restarts and gaps), ``day`` the UTC day
number (``timestamp // 1 day``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from candlecast.risk.reasons import Action, Reason

NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(slots=True)
class PositionRisk:
    """What the risk engine knows about one open position (one per symbol)."""

    symbol: str
    side: int  # +1 long, -1 short
    qty: float  # > 0, units of the base asset
    entry_price: float  # volume-weighted average fill price
    entry_bar: int
    initial_risk: float  # |entry - initial stop| per unit, NaN without a stop
    stop: float  # NaN = no stop
    stop_reason: Reason
    target: float  # NaN = no take-profit
    extreme: float  # best price since entry (highest high long, lowest low short)
    breakeven_done: bool
    fees: float  # entry fees not yet charged to a closed part (for net realized PnL)
    realized: float  # net PnL of the parts already closed (fees included)


@dataclass(slots=True)
class RiskState:
    """Account-level risk state. Start one with :meth:`RiskEngine.start`."""

    peak_equity: float
    last_equity: float
    day: int
    day_start_equity: float
    trades_today: int = 0
    halted_until_day: int = -1  # entries refused while day <= this (daily-loss halt)
    drawdown_halted: bool = False
    kill_switch: bool = False
    kill_reason: str = ""
    cooldown_until_bar: int = -1  # entries refused while bar < this
    positions: dict[str, PositionRisk] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN stored as ``None``)."""
        out = asdict(self)
        out["positions"] = {
            sym: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in p.items()}
            for sym, p in out["positions"].items()
        }
        for pos in out["positions"].values():
            pos["stop_reason"] = str(pos["stop_reason"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RiskState:
        raw = dict(data)
        positions = {}
        for sym, p in raw.pop("positions", {}).items():
            values: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in p.items()}
            values["stop_reason"] = Reason(values["stop_reason"])
            positions[sym] = PositionRisk(**values)
        return cls(**raw, positions=positions)


@dataclass(frozen=True, slots=True)
class Decision:
    """One risk decision. ``reason`` says why; ``notes`` list size modifiers on an entry."""

    action: Action
    reason: Reason
    symbol: str
    side: int = 0
    qty: float = 0.0
    stop: float = math.nan  # reference stop level for an entry (at the decision price)
    target: float = math.nan
    notes: tuple[Reason, ...] = ()
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "reason": str(self.reason),
            "symbol": self.symbol,
            "side": self.side,
            "qty": self.qty,
            "stop": None if math.isnan(self.stop) else self.stop,
            "target": None if math.isnan(self.target) else self.target,
            "notes": [str(n) for n in self.notes],
            "detail": self.detail,
        }


def _decision_init(self: Decision, action: Action, reason: Reason, symbol: str, side: int = 0,
                   qty: float = 0.0, stop: float = math.nan, target: float = math.nan,
                   notes: tuple[Reason, ...] = (), detail: str = "") -> None:
    # The generated __init__ of a frozen dataclass writes each field with object.__setattr__,
    # which re-checks the class on every call (about 2x the cost here, and the backtester
    # builds one Decision per trade). Writing the slots through their descriptors is what
    # object.__setattr__ ends up doing; the instance stays frozen, equal and hashable as before.
    a, r, sy, si, q, st, ta, no, de = _DECISION_SLOTS
    a(self, action)
    r(self, reason)
    sy(self, symbol)
    si(self, side)
    q(self, qty)
    st(self, stop)
    ta(self, target)
    no(self, notes)
    de(self, detail)


_DECISION_SLOTS = tuple(getattr(Decision, name).__set__ for name in Decision.__slots__)
Decision.__init__ = _decision_init  # type: ignore[method-assign]
