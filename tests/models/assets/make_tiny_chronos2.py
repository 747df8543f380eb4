"""Regenerate ``tiny-chronos2/``: a ~23k-parameter Chronos-2 checkpoint for offline tests.

Built from config (no download) and trained with ``Chronos2Pipeline.fit`` on mean-reverting
AR(1) return series (phi = -0.6), so zero-shot tests can check that loaded weights carry
something learned. Run: ``.venv/bin/python tests/models/assets/make_tiny_chronos2.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from candlecast.models.chronos_config import ChronosConfig  # noqa: E402
from candlecast.models.chronos_model import ChronosDirectionModel  # noqa: E402

TARGET = Path(__file__).resolve().parent / "tiny-chronos2"
TINY_ARCHITECTURE = {
    "d_model": 32,
    "d_kv": 16,
    "d_ff": 64,
    "num_layers": 1,
    "num_heads": 2,
    "context_length": 32,
    "patch_size": 4,
}


def ar1_frame(n: int, phi: float, seed: int, key: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, n)
    returns = np.zeros(n)
    for i in range(1, n):
        returns[i] = phi * returns[i - 1] + noise[i]
    return pd.DataFrame({"series_id": key, "logret_1": returns})


def main() -> None:
    torch.set_num_threads(1)
    frame = pd.concat(
        [ar1_frame(3000, -0.6, seed, f"synth:S{seed}/USD:1h") for seed in range(4)],
        ignore_index=True,
    )
    labels = pd.Series((frame["logret_1"].to_numpy() > 0).astype(float))
    config = ChronosConfig(
        **TINY_ARCHITECTURE,
        timestamp_column=None,
        num_steps=300,
        min_past=8,
        batch_size=64,
        seed=0,
    )
    model = ChronosDirectionModel(config).fit(frame, labels)
    shutil.rmtree(TARGET, ignore_errors=True)
    model.pipeline.save_pretrained(TARGET)
    size = sum(f.stat().st_size for f in TARGET.iterdir())
    print(f"wrote {TARGET} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
