"""`feature-store` stage: feast apply, materialize the online store, build the training set."""

from __future__ import annotations

import logging

import pandas as pd

from candlecast.config import Params
from candlecast.data.store import write_parquet_atomic
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.feature_store.store import (
    feast_apply,
    historical_features,
    materialize_all,
    open_store,
)
from candlecast.features import feature_names
from candlecast.pipeline.paths import Paths

log = logging.getLogger(__name__)


def run_feature_store(params: Params, paths: Paths) -> dict[str, object]:
    features = pd.read_parquet(paths.features)
    labels = pd.read_parquet(paths.labels)
    names = feature_names(params.features)
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise ValueError(
            f"{paths.features} lacks features {missing[:5]} that params.features defines; "
            "re-run the features stage"
        )
    paths.feast_data.mkdir(parents=True, exist_ok=True)
    (paths.root / "data" / "online").mkdir(parents=True, exist_ok=True)  # SQLite online store
    log.info("feast apply (%s)", paths.feature_repo)
    config_file = params.feature_store.repo_config
    feast_apply(paths.feature_repo, config_file)
    store = open_store(paths.feature_repo, config_file)
    start, end = features[EVENT_TIMESTAMP].min(), features[EVENT_TIMESTAMP].max()
    log.info("materializing the online store, %s .. %s", start, end)
    materialize_all(store, start, end)

    label_cols = [c for c in labels.columns if c.startswith(("label_", "fwd_"))]
    entity_df = labels[[JOIN_KEY, EVENT_TIMESTAMP, "timestamp", *label_cols]].rename(
        columns={"timestamp": "candle_timestamp"}
    )
    log.info("point-in-time join of %d entity rows", len(entity_df))
    dataset = historical_features(store, entity_df, params.feature_store.feature_service)
    write_parquet_atomic(dataset, paths.training_set)
    return {
        "rows": len(dataset),
        "series": sorted(dataset[JOIN_KEY].unique().tolist()),
        "features": len(names),
        "materialized_until": str(end),
    }
