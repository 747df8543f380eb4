"""``refresh``: new candles -> validate -> features -> feature store (offline + online).

New candles come from the replayed held-back sample (``ops.replay.enabled``, offline), the
pipeline's own ingest stage (``feed="poll"``: ccxt REST, resuming after the last stored candle),
or (``feed="stream"``) the streaming trader, which appends every candle it trades to the raw
store (``trade.stream.candle_store``): the refresh then polls REST only for the series the
stream has fallen behind on (trader stopped, symbol not traded). The other steps are the
pipeline's stage functions, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.config import Params
from candlecast.data.ingest import ingest_ccxt
from candlecast.data.store import CandleStore
from candlecast.ops.replay import replay_next
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import run_stage

#: the stages after the new candles are stored, in order
AFTER_INGEST: tuple[str, ...] = ("validate", "features", "feature-store")


def ingest_step(params: Params, paths: Paths, replay: bool | None = None,
                feed: str = "poll") -> dict[str, Any]:
    if feed not in ("poll", "stream"):
        raise ValueError(f"refresh feed must be 'poll' or 'stream', got {feed!r}")
    if feed == "stream":
        return stream_step(params, paths)
    use_replay = params.ops.replay.enabled if replay is None else replay
    if use_replay:
        return replay_next(params, paths, params.ops.replay)
    return run_stage("ingest", params, paths)


def stream_step(params: Params, paths: Paths, now: pd.Timestamp | None = None,
                **ingest_kwargs: Any) -> dict[str, Any]:
    """The candles the streaming trader stored; ccxt REST (the ingest, resuming) only for the
    series whose last stored candle is more than one candle behind the last closed one."""
    cfg, stream = params.ingest, params.trade.stream
    if cfg.source != "ccxt":
        raise ValueError("refresh --feed stream takes live candles: it needs ingest.source: ccxt")
    if stream.candle_store is None or \
            (paths.root / stream.candle_store).resolve() != Path(paths.raw).resolve():
        raise ValueError(f"refresh --feed stream reads what the trader appends to {paths.raw}: "
                         f"set trade.stream.candle_store to data/raw (is "
                         f"{stream.candle_store!r})")
    at = pd.Timestamp.now(tz="UTC") if now is None else now
    store = CandleStore(paths.raw)
    series_report: dict[str, Any] = {}
    behind = []
    for series in cfg.series:
        step = series.step
        last_closed = at.floor(step) - step
        last = store.last_timestamp(series)
        lag = None if last is None else int((last_closed - last) / step)
        series_report[series.key] = {"last": None if last is None else str(last),
                                     "lag_candles": lag}
        if lag is None or lag > 1:
            behind.append(series.symbol)
    out: dict[str, Any] = {"source": "stream", "series": series_report, "rest_symbols": behind}
    if behind:
        config = cfg.ccxt_config().model_copy(update={"symbols": tuple(behind)})
        out["rest"] = ingest_ccxt(config, store, now=at, **ingest_kwargs).to_dict()
    return out


def run_refresh(params: Params, paths: Paths, replay: bool | None = None,
                feed: str = "poll") -> dict[str, Any]:
    out = {"ingest": ingest_step(params, paths, replay, feed)}
    for stage in AFTER_INGEST:
        out[stage] = run_stage(stage, params, paths)
    return out
