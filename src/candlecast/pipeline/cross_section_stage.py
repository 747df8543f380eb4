"""`cross-section` stage (the portfolio path): each coin against the universe at every bar.

Reads the per-coin features and labels of the ``features`` stage and writes, as Feast-ready
Parquet next to them: ``cross_section.parquet`` (the coin view, keyed by ``series_id``),
``universe.parquet`` (the universe view, keyed by ``universe_id``) and
``cross_section_labels.parquet`` (each coin's forward return relative to the basket, the
pooled model's target). The definitions: :mod:`candlecast.features.cross_section`.
"""

from __future__ import annotations

import logging

import pandas as pd

from candlecast.config import Params
from candlecast.data.schema import timeframe_to_timedelta
from candlecast.data.store import write_parquet_atomic
from candlecast.features.cross_section import (
    SERIES,
    TIME,
    UNIVERSE,
    coin_feature_names,
    compute_cross_section,
    cross_section_labels,
    universe_feature_names,
    universe_key,
)
from candlecast.pipeline.paths import Paths

log = logging.getLogger(__name__)
CREATED = "created_timestamp"


def universe_id(params: Params) -> str:
    ingest = params.ingest
    return universe_key(ingest.exchange, ingest.timeframe, ingest.symbols)


def _feast_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Microsecond UTC event and created timestamps (what DuckDB, Feast's offline engine
    here, reads), as :func:`candlecast.feature_store.store.to_feast_table` writes them."""
    out = frame.copy()
    out[TIME] = pd.to_datetime(out[TIME], utc=True).astype("datetime64[us, UTC]")
    out.insert(2, CREATED, out[TIME])
    return out


def run_cross_section(params: Params, paths: Paths) -> dict[str, object]:
    cfg = params.cross_section
    if not cfg.enabled:
        raise ValueError("cross_section.enabled is false: the cross-section stage belongs to the "
                         "portfolio path (candlecast portfolio, profiles/portfolio.yaml)")
    sids = [s.key for s in params.ingest.series]
    symbols = list(params.ingest.symbols)
    features = pd.read_parquet(paths.features, columns=[SERIES, TIME, *cfg.input_columns()])
    step = timeframe_to_timedelta(params.ingest.timeframe)
    uid = universe_id(params)
    coins, universe = compute_cross_section(features, symbols, sids, step, cfg, uid)
    labels = pd.read_parquet(paths.labels)
    relative = cross_section_labels(labels, sids, params.labels.horizons, cfg.min_coins)
    candle_open = labels.set_index([SERIES, TIME])["timestamp"]
    relative.insert(2, UNIVERSE, uid)
    relative.insert(3, "timestamp", candle_open.reindex(
        pd.MultiIndex.from_frame(relative[[SERIES, TIME]])).to_numpy())
    write_parquet_atomic(_feast_columns(coins), paths.cross_section)
    write_parquet_atomic(_feast_columns(universe), paths.universe_features)
    write_parquet_atomic(relative, paths.cross_section_labels)
    names = coin_feature_names(cfg)
    log.info("cross-section of %d coins: %d coin rows, %d universe rows", len(sids), len(coins),
             len(universe))
    return {
        "universe_id": uid, "coins": len(sids), "coin_rows": len(coins),
        "universe_rows": len(universe),
        "coin_features": len(names), "universe_features": len(universe_feature_names(cfg)),
        "rows_with_all_coin_features": int(coins[names].notna().all(axis=1).sum()),
        "mean_coins_per_bar": float(universe["mkt_coins"].mean()),
        "labelled_rows": {f"fwd_rel_{h}": int(relative[f"fwd_rel_{h}"].notna().sum())
                          for h in params.labels.horizons},
    }
