"""How the policy's target becomes a working order: the decision step the trader shares with
the backtesters, defined once in :mod:`candlecast.backtest.plan` (re-exported here)."""

from __future__ import annotations

from candlecast.backtest.plan import DecisionRow, TargetPlan, plan_target

__all__ = ["DecisionRow", "TargetPlan", "plan_target"]
