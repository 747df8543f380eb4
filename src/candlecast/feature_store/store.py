"""Run the Feast repository: apply, materialize, point-in-time training sets, online reads."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import FeatureStore

from candlecast.data.schema import SeriesId
from candlecast.feature_store.definitions import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FEATURE_VIEW,
    JOIN_KEY,
)

SERIES_COLUMNS = ["exchange", "symbol", "timeframe"]


def to_feast_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the Feast columns to a per-candle table (features or labels).

    ``event_timestamp`` is the candle's close time: the moment its values become known.
    """
    out = frame.copy()
    steps = out["timeframe"].map(lambda tf: SeriesId("x", "A/B", tf).step)
    out.insert(0, JOIN_KEY, out["exchange"] + ":" + out["symbol"] + ":" + out["timeframe"])
    out.insert(1, EVENT_TIMESTAMP, out["timestamp"] + pd.to_timedelta(steps))
    out.insert(2, CREATED_TIMESTAMP, out[EVENT_TIMESTAMP])
    # microseconds: DuckDB (Feast's offline engine here) cannot cast nanosecond TIMESTAMPTZ
    for col in (EVENT_TIMESTAMP, CREATED_TIMESTAMP, "timestamp"):
        out[col] = out[col].astype("datetime64[us, UTC]")
    return out


def feast_apply(repo_path: Path, config_file: str = "feature_store.yaml") -> None:
    """``feast apply`` on the repository, as a user would run it; raises with Feast's message."""
    feast_cli = Path(sys.executable).with_name("feast")
    cmd = [str(feast_cli), "--chdir", str(repo_path),
           "--feature-store-yaml", str((repo_path / config_file).resolve()), "apply"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError("feast apply failed: " + " | ".join(tail))


def open_store(repo_path: Path, config_file: str = "feature_store.yaml") -> FeatureStore:
    """The repository's store through ``config_file`` (its online store: SQLite or Redis)."""
    return FeatureStore(repo_path=str(repo_path), fs_yaml_file=repo_path / config_file)


def materialize_all(store: FeatureStore, start: pd.Timestamp, end: pd.Timestamp,
                    views: Sequence[str] = (FEATURE_VIEW,)) -> None:
    """Load the latest row per entity in ``[start, end]`` of ``views`` into the online store."""
    store.materialize(
        start_date=start.to_pydatetime() - timedelta(seconds=1),
        end_date=end.to_pydatetime() + timedelta(seconds=1),
        feature_views=list(views),
    )


def historical_features(
    store: FeatureStore, entity_df: pd.DataFrame, service_name: str
) -> pd.DataFrame:
    """Point-in-time join of the feature service onto ``entity_df`` (``series_id``,
    ``event_timestamp`` and any extra columns, e.g. labels, which are carried through)."""
    service = store.get_feature_service(service_name)
    job = store.get_historical_features(entity_df=entity_df, features=service)
    frame = job.to_df()
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    return frame.sort_values([EVENT_TIMESTAMP, JOIN_KEY], kind="stable").reset_index(drop=True)


def online_features(
    store: FeatureStore, series_ids: Sequence[str], service_name: str
) -> pd.DataFrame:
    """The latest materialized feature values of each series (one row per series id)."""
    service = store.get_feature_service(service_name)
    response = store.get_online_features(
        features=service, entity_rows=[{JOIN_KEY: s} for s in series_ids]
    )
    return response.to_df()
