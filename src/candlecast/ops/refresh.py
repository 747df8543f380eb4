"""``refresh``: new candles -> validate -> features -> feature store (offline + online).

New candles come from the replayed held-back sample (``ops.replay.enabled``, offline) or the
pipeline's own ingest stage (ccxt, resuming after the last stored candle). The other steps are
the pipeline's stage functions, unchanged.
"""

from __future__ import annotations

from typing import Any

from candlecast.config import Params
from candlecast.ops.replay import replay_next
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import run_stage

#: the stages after the new candles are stored, in order
AFTER_INGEST: tuple[str, ...] = ("validate", "features", "feature-store")


def ingest_step(params: Params, paths: Paths, replay: bool | None = None) -> dict[str, Any]:
    use_replay = params.ops.replay.enabled if replay is None else replay
    if use_replay:
        return replay_next(params, paths, params.ops.replay)
    return run_stage("ingest", params, paths)


def run_refresh(params: Params, paths: Paths, replay: bool | None = None) -> dict[str, Any]:
    out = {"ingest": ingest_step(params, paths, replay)}
    for stage in AFTER_INGEST:
        out[stage] = run_stage(stage, params, paths)
    return out
