"""The policy: forecasts, the current position and the cost model in, a target position out.

:class:`Policy` is pure and holds no state: ``decide(forecast, position, bars_held)`` returns a
:class:`PolicyDecision` (the target as a signed fraction of equity in [-1, 1] and why). The
backtester, the signal service and the trader construct it from the same
:class:`~candlecast.policy.PolicyConfig` and cost model and call it the same way, once per
closed bar. Stops, limits and the kill switch stay with the risk engine: the policy only says
where the position should be.

The rule, with ``c`` the round-trip cost of the execution style (fees, half spread, slippage;
:func:`~candlecast.policy.round_trip_cost`) and ``e`` the forecast log return over
``config.horizon`` bars:

* flat: go long when ``e > entry_margin x c``, short (if allowed) when ``-e > entry_margin x c``;
* in a position: stay while the edge in its direction is at least ``exit_margin x c``; below it,
  go flat (or reverse, if the other side clears the entry threshold) once the position is
  ``min_hold_bars`` old;
* size ``min(max_position, vol_target / annualized forecast volatility)``; while holding, resize
  only when the size moved by ``min_change`` or more;
* an unknown forecast (NaN) keeps what is held and opens nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from candlecast.backtest.config import CostConfig
from candlecast.policy.config import PolicyConfig
from candlecast.policy.costs import round_trip_cost

NAN = math.nan
_FLAT = 1e-9  # |position| below this (fraction of equity) is flat


class PolicyReason(StrEnum):
    """Why the policy chose its target (stable strings: the service and dashboards show them)."""

    NO_FORECAST = "no_forecast"  # expected return or volatility unknown: keep, open nothing
    BELOW_ENTRY = "below_entry"  # flat and the edge does not pay the entry threshold
    TOO_SMALL = "too_small"  # the sized position is below min_change: not worth an order
    ENTER_LONG = "enter_long"
    ENTER_SHORT = "enter_short"
    HOLD = "hold"  # the edge in the position's direction is above the exit threshold
    MIN_HOLD = "min_hold"  # below the exit threshold, but the position is too young to leave
    EXIT = "exit"  # below the exit threshold: flat
    REVERSE = "reverse"  # the other side clears the entry threshold
    REBALANCE = "rebalance"  # same side, the vol-target size moved by min_change or more
    SHORT_NOT_ALLOWED = "short_not_allowed"  # a short is held but the policy is long-only


@dataclass(frozen=True, slots=True)
class Forecast:
    """What the model says at a bar's close, for the policy's horizon.

    ``expected_return``: the forecast log return over ``horizon`` bars; ``volatility``: the
    forecast standard deviation of ONE bar's log return; ``prob_up``: P(return > 0) (reported,
    not used by the rule). NaN where unknown.
    """

    expected_return: float
    volatility: float = NAN
    prob_up: float = NAN


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """The target (signed fraction of equity) and the numbers behind it."""

    target: float
    reason: PolicyReason
    edge: float  # the forecast expected return over the horizon (log), NaN if unknown
    entry_threshold: float  # entry_margin x round-trip cost
    exit_threshold: float  # exit_margin x round-trip cost
    size: float  # the vol-targeted size the policy would hold now (NaN if unknown)

    def to_dict(self) -> dict[str, float | str | None]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {"target_position": float(self.target), "reason": str(self.reason),
                "edge": num(self.edge), "entry_threshold": self.entry_threshold,
                "exit_threshold": self.exit_threshold, "size": num(self.size)}


class Policy:
    """The cost-aware decision rule of :class:`PolicyConfig` (see the module docstring).

    ``bars_per_year`` annualizes the per-bar volatility for vol targeting (17,520 for 30m).
    """

    __slots__ = ("_ann", "_entry", "_exit", "bars_per_year", "config", "costs", "round_trip")

    def __init__(self, config: PolicyConfig, costs: CostConfig, bars_per_year: float) -> None:
        if not bars_per_year > 0:
            raise ValueError(f"bars_per_year must be > 0, got {bars_per_year}")
        self.config, self.costs, self.bars_per_year = config, costs, bars_per_year
        self.round_trip = round_trip_cost(costs, config.execution)
        self._entry = config.entry_margin * self.round_trip
        self._exit = config.exit_margin * self.round_trip
        self._ann = math.sqrt(bars_per_year)

    def __repr__(self) -> str:
        return f"Policy({self.config.label()}, round_trip={self.round_trip * 1e4:.1f}bps)"

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def size(self, volatility: float) -> float:
        """The vol-targeted position size (unsigned fraction of equity); NaN if unknown."""
        cfg = self.config
        if cfg.vol_target is None:
            return cfg.max_position
        if not volatility > 0 or math.isinf(volatility):  # NaN fails too
            return NAN
        size = cfg.vol_target / (volatility * self._ann)
        return size if size < cfg.max_position else cfg.max_position

    def decide(self, forecast: Forecast, position: float, bars_held: int) -> PolicyDecision:
        """The target for the next bar given the forecast at this close, the ``position`` held
        (signed fraction of equity, including a working order's target) and how many bars it
        has been held (0 when flat)."""
        cfg = self.config
        e = forecast.expected_return
        entry, exit_ = self._entry, self._exit
        side = 1 if position > _FLAT else -1 if position < -_FLAT else 0
        size = self.size(forecast.volatility)

        def out(target: float, reason: PolicyReason) -> PolicyDecision:
            return PolicyDecision(target, reason, e, entry, exit_, size)

        if side < 0 and not cfg.allow_short:
            return out(0.0, PolicyReason.SHORT_NOT_ALLOWED)
        if math.isnan(e):
            return out(position if side else 0.0, PolicyReason.NO_FORECAST)
        if side == 0:
            if e > entry:
                want = 1
            elif cfg.allow_short and -e > entry:
                want = -1
            else:
                return out(0.0, PolicyReason.BELOW_ENTRY)
            if math.isnan(size):
                return out(0.0, PolicyReason.NO_FORECAST)
            if size < cfg.min_change:
                return out(0.0, PolicyReason.TOO_SMALL)
            reason = PolicyReason.ENTER_LONG if want > 0 else PolicyReason.ENTER_SHORT
            return out(want * size, reason)
        if e * side < exit_:
            if bars_held < cfg.min_hold_bars:
                return out(position, PolicyReason.MIN_HOLD)
            other = -side
            if (-e * side > entry and (other > 0 or cfg.allow_short) and not math.isnan(size)
                    and size >= cfg.min_change):
                return out(other * size, PolicyReason.REVERSE)
            return out(0.0, PolicyReason.EXIT)
        if math.isnan(size):
            return out(position, PolicyReason.HOLD)
        resized = side * size
        if abs(resized - position) >= cfg.min_change > 0 or (cfg.min_change == 0
                                                              and resized != position):
            return out(resized, PolicyReason.REBALANCE)
        return out(position, PolicyReason.HOLD)


class PolicyDecider:
    """The policy over per-bar forecast arrays, as the target backtester's decider
    (:func:`candlecast.backtest.targets.run_targets`): bar ``t`` decides on the forecast made
    at bar ``t``'s close, nothing later."""

    __slots__ = ("_er", "_pu", "_vol", "policy")

    def __init__(self, policy: Policy, expected_return: object, volatility: object,
                 prob_up: object | None = None) -> None:
        er = np.asarray(expected_return, dtype=float)
        vol = np.asarray(volatility, dtype=float)
        if er.ndim != 1 or vol.shape != er.shape:
            raise ValueError(f"expected_return {er.shape} and volatility {vol.shape} must be "
                             "one-dimensional and of the same length (one per bar)")
        pu = np.full(len(er), NAN) if prob_up is None else np.asarray(prob_up, dtype=float)
        if pu.shape != er.shape:
            raise ValueError(f"prob_up has shape {pu.shape}, expected {er.shape}")
        self.policy = policy
        self._er, self._vol, self._pu = er.tolist(), vol.tolist(), pu.tolist()

    def __len__(self) -> int:
        return len(self._er)

    def decide(self, bar: int, position: float, bars_held: int) -> tuple[float, str, float]:
        d = self.policy.decide(Forecast(self._er[bar], self._vol[bar], self._pu[bar]),
                               position, bars_held)
        return d.target, d.reason.value, d.edge


class FoldedDecider:
    """Walk-forward trading: bar ``t`` is decided by the policy chosen for its fold
    (``segment[t]`` indexes ``policies``; ``None`` there means flat: leave any position and
    open nothing), each on the forecasts of its own horizon. The position carries across
    fold boundaries as in one account."""

    def __init__(self, policies: list[Policy | None], segment: object,
                 forecasts: dict[int, tuple[object, object, object]]) -> None:
        seg = np.asarray(segment, dtype=int)
        if seg.ndim != 1 or (len(seg) and (seg.min() < 0 or seg.max() >= len(policies))):
            raise ValueError(f"segment must index the {len(policies)} policies, one per bar")
        self._segment = seg.tolist()
        self._deciders: list[PolicyDecider | None] = []
        for policy in policies:
            if policy is None:
                self._deciders.append(None)
                continue
            if policy.horizon not in forecasts:
                raise ValueError(f"no forecasts for horizon {policy.horizon}")
            er, vol, prob = forecasts[policy.horizon]
            self._deciders.append(PolicyDecider(policy, er, vol, prob))
        self._policies = policies

    def __len__(self) -> int:
        return len(self._segment)

    def decide(self, bar: int, position: float, bars_held: int) -> tuple[float, str, float]:
        decider = self._deciders[self._segment[bar]]
        if decider is None:
            return 0.0, "flat_fold", NAN
        return decider.decide(bar, position, bars_held)

    def execution_at(self, bar: int) -> object:
        policy = self._policies[self._segment[bar]]
        return None if policy is None else policy.config.execution
