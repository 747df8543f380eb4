"""Real-data frames shaped like the Feast training set, for the walk-forward and tuning tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from candlecast.data.sample import load_sample
from candlecast.features import compute_features, feature_names, make_labels

SAMPLE_ROOT = Path(__file__).resolve().parents[2] / "data" / "sample"
BAR = pd.Timedelta(minutes=30)
FEATURES = tuple(feature_names())


@lru_cache(maxsize=4)
def _training_set(rows: int, symbols: tuple[str, ...]) -> pd.DataFrame:
    parts = []
    for symbol in symbols:
        candles = load_sample(SAMPLE_ROOT, "bitfinex_30m", symbol).head(rows)
        features = compute_features(candles)
        labels = make_labels(candles)
        frame = features[["timestamp", *FEATURES]].merge(
            labels[["timestamp", "label_up_1", "fwd_logret_1"]], on="timestamp"
        )
        frame.insert(0, "series_id", f"bitfinex:{symbol}:30m")
        frame.insert(1, "event_timestamp", frame["timestamp"] + BAR)
        parts.append(frame.drop(columns="timestamp"))
    return pd.concat(parts, ignore_index=True).sort_values(
        ["event_timestamp", "series_id"], kind="stable"
    ).reset_index(drop=True)


def training_set(
    rows: int = 2500, symbols: tuple[str, ...] = ("BTC/USD", "ETH/USD")
) -> pd.DataFrame:
    """All rows (history, labels may be NaN) of real Bitfinex 30m candles, oldest first."""
    return _training_set(rows, symbols).copy()


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label_up_1"].notna()].reset_index(drop=True)
