"""The risk engine shared by the backtester and the live trader (pure: values in, values out)."""

from candlecast.risk.config import ExitConfig, LimitsConfig, RiskConfig, SizingConfig
from candlecast.risk.engine import BarMarks, RiskEngine, to_ns
from candlecast.risk.hold import HoldBars
from candlecast.risk.reasons import Action, Reason
from candlecast.risk.state import Decision, PositionRisk, RiskState

__all__ = [
    "Action",
    "BarMarks",
    "Decision",
    "ExitConfig",
    "HoldBars",
    "LimitsConfig",
    "PositionRisk",
    "Reason",
    "RiskConfig",
    "RiskEngine",
    "RiskState",
    "SizingConfig",
    "to_ns",
]
