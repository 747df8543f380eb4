"""`feature-store` stage: feast apply, materialize the online store, build the training set.

On the portfolio path (``cross_section.enabled``) the cross-sectional views are materialized
too, and the training set is the point-in-time join of the pooled model's service (candle,
coin and universe views) onto the RELATIVE targets: the zoo trains on whatever target the
training set names, so here ``fwd_logret_<h>`` / ``label_up_<h>`` hold each coin's forward
return relative to the basket and its sign (the absolute return is kept as
``abs_fwd_logret_<h>``).
"""

from __future__ import annotations

import logging

import pandas as pd

from candlecast.config import Params
from candlecast.data.store import write_parquet_atomic
from candlecast.feature_store.definitions import (
    COIN_VIEW,
    EVENT_TIMESTAMP,
    FEATURE_VIEW,
    JOIN_KEY,
    UNIVERSE_KEY,
    UNIVERSE_VIEW,
)
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
    portfolio = params.cross_section.enabled
    views = (FEATURE_VIEW, COIN_VIEW, UNIVERSE_VIEW) if portfolio else (FEATURE_VIEW,)
    log.info("materializing the online store (%s), %s .. %s", ", ".join(views), start, end)
    materialize_all(store, start, end, views)
    entity_df = relative_entities(params, paths, labels) if portfolio else labels[
        [JOIN_KEY, EVENT_TIMESTAMP, "timestamp",
         *(c for c in labels.columns if c.startswith(("label_", "fwd_")))]]
    entity_df = entity_df.rename(columns={"timestamp": "candle_timestamp"})
    service = (params.cross_section.feature_service if portfolio
               else params.feature_store.feature_service)
    log.info("point-in-time join of %d entity rows (%s)", len(entity_df), service)
    dataset = historical_features(store, entity_df, service)
    write_parquet_atomic(dataset, paths.training_set)
    return {
        "rows": len(dataset),
        "series": sorted(dataset[JOIN_KEY].unique().tolist()),
        "features": len(names),
        "materialized_until": str(end),
    }


def relative_entities(params: Params, paths: Paths, labels: pd.DataFrame) -> pd.DataFrame:
    """The portfolio path's entity rows: ``series_id, universe_id, event_timestamp``, the
    candle's open time, the relative targets under the zoo's target names and the absolute
    forward returns as ``abs_fwd_logret_<h>``."""
    relative = pd.read_parquet(paths.cross_section_labels)
    rename = {}
    for h in params.labels.horizons:
        rename[f"fwd_rel_{h}"] = f"fwd_logret_{h}"
        rename[f"label_rel_up_{h}"] = f"label_up_{h}"
    absolute = labels[[JOIN_KEY, EVENT_TIMESTAMP, *(f"fwd_logret_{h}" for h in
                                                   params.labels.horizons)]]
    absolute = absolute.rename(columns={f"fwd_logret_{h}": f"abs_fwd_logret_{h}"
                                        for h in params.labels.horizons})
    frame = relative.rename(columns=rename).merge(absolute, on=[JOIN_KEY, EVENT_TIMESTAMP],
                                                  how="left")
    return frame[[JOIN_KEY, UNIVERSE_KEY, EVENT_TIMESTAMP, "timestamp",
                  *(c for c in frame.columns if c.startswith(("label_", "fwd_", "abs_fwd_")))]]
