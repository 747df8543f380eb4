"""Turn model probabilities and baseline features into -1/0/+1 signals (pure)."""

from __future__ import annotations

import numpy as np


def probability_signal(prob_up: np.ndarray, band: float, allow_short: bool) -> np.ndarray:
    """+1 when P(up) > 0.5 + band, -1 when P(up) < 0.5 - band (if shorts are allowed), else 0.

    A missing probability (no prediction for that candle) is flat, never a guess.
    """
    if not 0 <= band < 0.5:
        raise ValueError(f"band must be in [0, 0.5), got {band}")
    p = np.asarray(prob_up, dtype=float)
    signal = np.zeros(len(p))
    known = np.isfinite(p)
    signal[known & (p > 0.5 + band)] = 1.0
    if allow_short:
        signal[known & (p < 0.5 - band)] = -1.0
    return signal


def sign_signal(values: np.ndarray, allow_short: bool) -> np.ndarray:
    """The sign of a feature (e.g. the last return, an MA distance); NaN is flat."""
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
    signal = np.sign(v)
    return signal if allow_short else np.maximum(signal, 0.0)
