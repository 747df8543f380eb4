"""`features` stage: features and labels of every validated series, as Feast-ready Parquet."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from candlecast.config import Params
from candlecast.data.store import CandleStore, write_parquet_atomic
from candlecast.feature_store.store import to_feast_table
from candlecast.features import compute_features, feature_names, make_labels
from candlecast.pipeline.paths import Paths

log = logging.getLogger(__name__)


def run_features(params: Params, paths: Paths) -> dict[str, object]:
    store = CandleStore(paths.validated)
    features, labels = [], []
    for series in tqdm(params.ingest.series, desc="features", unit="series"):
        candles = store.read(series)
        if candles.empty:
            raise ValueError(f"no validated candles for {series.key}; run the validate stage")
        features.append(to_feast_table(compute_features(candles, params.features)))
        labels.append(to_feast_table(make_labels(candles, params.labels)))
    feature_table = pd.concat(features, ignore_index=True)
    label_table = pd.concat(labels, ignore_index=True)
    write_parquet_atomic(feature_table, paths.features)
    write_parquet_atomic(label_table, paths.labels)
    names = feature_names(params.features)
    warm = feature_table[names].notna().all(axis=1)
    return {
        "rows": len(feature_table),
        "features": len(names),
        "rows_with_all_features": int(warm.sum()),
        "labelled_rows": {
            c: int(label_table[c].notna().sum())
            for c in label_table.columns
            if c.startswith("label_")
        },
    }
