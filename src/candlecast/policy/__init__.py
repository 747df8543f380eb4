"""The decision layer: forecasts -> a target position, net of what trading costs.

One pure, typed :class:`Policy` (values in, value out) decides in the backtest, in the signal
service's ``/signal`` and in the trader; :mod:`.execution` holds the order-fill rules (market at
the next open, passive limit only when a later bar trades through its price) that the backtester
and the paper broker share; :mod:`.tuning` chooses a policy inside a walk-forward fold on data
before its test window, net of costs.
"""

from __future__ import annotations

from candlecast.backtest.config import ExecutionConfig
from candlecast.policy.config import PolicyConfig, PolicySearchSpace, PolicyTuning
from candlecast.policy.core import (
    FoldedDecider,
    Forecast,
    Policy,
    PolicyDecider,
    PolicyDecision,
    PolicyReason,
)
from candlecast.policy.costs import round_trip_cost, side_cost

__all__ = [
    "ExecutionConfig",
    "FoldedDecider",
    "Forecast",
    "Policy",
    "PolicyConfig",
    "PolicyDecider",
    "PolicyDecision",
    "PolicyReason",
    "PolicySearchSpace",
    "PolicyTuning",
    "round_trip_cost",
    "side_cost",
]
