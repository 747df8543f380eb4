"""Probabilities and features to -1/0/+1 signals."""

import numpy as np
import pytest

from candlecast.backtest.signals import probability_signal, sign_signal


def test_probability_signal_respects_the_band_and_shorting():
    p = np.array([0.70, 0.52, 0.50, 0.48, 0.30, np.nan])
    assert probability_signal(p, 0.0, True).tolist() == [1, 1, 0, -1, -1, 0]
    assert probability_signal(p, 0.05, True).tolist() == [1, 0, 0, 0, -1, 0]
    assert probability_signal(p, 0.05, False).tolist() == [1, 0, 0, 0, 0, 0]


def test_probability_signal_rejects_a_band_that_would_never_trade():
    with pytest.raises(ValueError, match="band"):
        probability_signal(np.array([0.9]), 0.5, True)


def test_sign_signal_maps_missing_to_flat():
    values = np.array([0.01, -0.02, 0.0, np.nan])
    assert sign_signal(values, True).tolist() == [1, -1, 0, 0]
    assert sign_signal(values, False).tolist() == [1, 0, 0, 0]
