"""A replayed "new" period: the tail of the bundled real sample, fed in chunks as if it were
live candles, through the same ingest -> validate -> features -> feature-store functions.

* ``replay_cut`` (pure): the bundled sample's last ``holdout_bars`` bars are held back;
* ``replay_init``: the raw store holds the sample up to the cut (what the pipeline trains on);
* ``replay_next``: appends the next ``chunk_bars`` held-back candles after the cursor.

The cursor lives in ``<state_dir>/replay.json``; with no state, it starts at the store's
last candle (so a store ingested up to the cut by any means works).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.config import Params
from candlecast.data.sample import load_sample
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.ops.config import ReplayConfig
from candlecast.pipeline.paths import Paths


def replay_cut(last_times: list[pd.Timestamp], holdout_bars: int,
               step: pd.Timedelta) -> pd.Timestamp:
    """Candles with open time >= the cut are held back: ``holdout_bars`` bars before the
    earliest series end (so every series has the same cut)."""
    if not last_times:
        raise ValueError("replay_cut needs at least one series")
    return min(last_times) - (holdout_bars - 1) * step


def next_chunk(candles: pd.DataFrame, after: pd.Timestamp | None,
               chunk_bars: int) -> pd.DataFrame:
    """The first ``chunk_bars`` candles strictly after ``after`` (all if ``after`` is None)."""
    newer = candles if after is None else candles[candles["timestamp"] > after]
    return newer.sort_values("timestamp", kind="stable").head(chunk_bars).reset_index(drop=True)


@dataclass(frozen=True)
class ReplayState:
    cut: str | None
    cursor: str | None
    chunks: int = 0

    @classmethod
    def load(cls, path: Path) -> ReplayState | None:
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def state_path(params: Params, paths: Paths) -> Path:
    return paths.root / params.ops.state_dir / "replay.json"


def _sample(params: Params, paths: Paths, series: SeriesId) -> pd.DataFrame:
    if params.ingest.source != "sample":
        raise ValueError("replay needs ingest.source = sample (it replays the bundled data)")
    return load_sample(paths.sample, params.ingest.sample_dataset, series.symbol)


def replay_init(params: Params, paths: Paths, config: ReplayConfig) -> dict[str, Any]:
    """Store the bundled sample up to the cut (rows after it are the replayed period)."""
    series = params.ingest.series
    samples = {s.key: _sample(params, paths, s) for s in series}
    cut = replay_cut([f["timestamp"].iloc[-1] for f in samples.values()],
                     config.holdout_bars, series[0].step)
    store = CandleStore(paths.raw)
    report: dict[str, Any] = {"cut": str(cut), "series": {}}
    for s in series:
        kept = samples[s.key][samples[s.key]["timestamp"] < cut]
        store.replace(s, kept)
        report["series"][s.key] = {"rows": len(kept), "last": str(kept["timestamp"].iloc[-1])}
    cursor = max(pd.Timestamp(v["last"]) for v in report["series"].values())
    ReplayState(str(cut), str(cursor), 0).save(state_path(params, paths))
    return report


def replay_next(params: Params, paths: Paths, config: ReplayConfig) -> dict[str, Any]:
    """Append the next chunk of held-back candles to the raw store; move the cursor."""
    store = CandleStore(paths.raw)
    series = params.ingest.series
    state = ReplayState.load(state_path(params, paths))
    if state is None or state.cursor is None:
        lasts = [store.last_timestamp(s) for s in series]
        if any(t is None for t in lasts):
            raise ValueError("replay: the raw store is empty; run `candlecast ops replay-init` "
                             "(or the ingest stage) first")
        state = ReplayState(None, str(min(lasts)), 0)  # type: ignore[type-var]
    cursor = pd.Timestamp(state.cursor)
    report: dict[str, Any] = {"source": "replay", "after": str(cursor), "series": {}}
    newest = cursor
    for s in series:
        chunk = next_chunk(_sample(params, paths, s), cursor, config.chunk_bars)
        rows = store.upsert(s, chunk) if len(chunk) else len(store.read(s))
        report["series"][s.key] = {"appended": len(chunk), "rows": rows}
        if len(chunk):
            report["series"][s.key]["last"] = str(chunk["timestamp"].iloc[-1])
            newest = max(newest, chunk["timestamp"].iloc[-1])
    appended = sum(v["appended"] for v in report["series"].values())
    report["appended"] = appended
    report["exhausted"] = appended == 0
    report["cursor"] = str(newest)
    ReplayState(state.cut, str(newest), state.chunks + (1 if appended else 0)).save(
        state_path(params, paths)
    )
    return report
