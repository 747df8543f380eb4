"""Process-wide defaults set by the entry points (flows) before Prefect, MLflow, Feast or
BentoML are imported: nothing calls home, and Prefect's temporary API server gets time to
start on a busy 2-core machine (its default is 20 s). Values already set are kept."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OFFLINE_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("DO_NOT_TRACK", "1"),
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("FEAST_USAGE", "False"),
    ("BENTOML_DO_NOT_TRACK", "True"),
    ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"),
)


def set_offline_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    for name, value in OFFLINE_DEFAULTS:
        environ.setdefault(name, value)
