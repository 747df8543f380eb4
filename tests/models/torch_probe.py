"""Run by tests/models/test_reproducibility.py in a fresh process: train the transformer and a
scratch Chronos-2 (the quick profile's sizes, one thread, seeded) on real BTC 30m features and
print the SHA-256 of each model's P(up) bytes on later rows, and the CPU capability torch used."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from candlecast.data.sample import load_sample
from candlecast.features import FeatureConfig, compute_features, feature_names
from candlecast.models.chronos_config import ChronosConfig
from candlecast.models.chronos_model import ChronosDirectionModel
from candlecast.models.transformer import TransformerConfig, TransformerDirectionModel


def main(sample: Path) -> dict[str, str]:
    torch.set_num_threads(1)
    candles = load_sample(sample, "bitfinex_30m", "BTC/USD").iloc[-2600:].reset_index(drop=True)
    frame = compute_features(candles, FeatureConfig()).dropna().reset_index(drop=True)
    frame.insert(0, "series_id", "bitfinex:BTC/USD:30m")
    if "timestamp" in frame:
        frame = frame.rename(columns={"timestamp": "event_timestamp"})
    X = frame[["series_id", "event_timestamp", *feature_names(FeatureConfig())]]
    y = pd.Series((frame["logret_1"].shift(-1).fillna(0.0) > 0).astype(float))
    train, test = slice(0, 2000), slice(2000, None)
    models = {
        "transformer": TransformerDirectionModel(TransformerConfig(
            window=8, d_model=16, num_heads=2, dim_feedforward=32, max_epochs=2,
            batch_size=256, enable_progress_bar=False, checkpoint_dir=None)),
        "chronos": ChronosDirectionModel(ChronosConfig(
            checkpoint="scratch", d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
            context_length=32, patch_size=4, min_past=8, num_steps=20, batch_size=32,
            show_progress=False), name="chronos"),
    }
    out = {}
    for name, model in models.items():
        prob = model.fit(X.iloc[train], y.iloc[train]).predict_proba_up(X.iloc[test])
        out[name] = hashlib.sha256(prob.astype("float64").tobytes()).hexdigest()
    out["capability"] = torch.backends.cpu.get_cpu_capability()
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
