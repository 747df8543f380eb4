"""Monitoring: pure drift and decay checks (``drift``), the Evidently report (``report``) and the
alerts (``alerts``: the webhook notifier the ops flows and the trader send to, a service probe).

See docs/operations.md.
"""

from candlecast.monitoring.config import DecayConfig, DriftConfig
from candlecast.monitoring.drift import (
    DriftVerdict,
    column_drift,
    drift_verdict,
    normed_wasserstein,
    performance,
    performance_decay,
)

__all__ = [
    "DecayConfig",
    "DriftConfig",
    "DriftVerdict",
    "column_drift",
    "drift_verdict",
    "normed_wasserstein",
    "performance",
    "performance_decay",
]
