"""Labels: the realized future return, never bridged across a gap or past the end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from candlecast.features import LabelConfig, label_names, make_labels, make_labels_multi


def reference_labels(candles: pd.DataFrame, h: int) -> np.ndarray:
    """A plain loop over timestamps: defined iff every bar t+1..t+h exists on the time grid."""
    step = pd.Timedelta(candles["timeframe"].iloc[0].replace("m", "min")).value
    stamps = pd.DatetimeIndex(candles["timestamp"]).asi8.tolist()
    close_at = dict(zip(stamps, candles["close"].tolist(), strict=True))
    out = []
    for ts, close in zip(stamps, candles["close"].tolist(), strict=True):
        if all(ts + k * step in close_at for k in range(1, h + 1)):
            out.append(math.log(close_at[ts + h * step] / close))
        else:
            out.append(math.nan)
    return np.array(out)


def test_forward_returns_are_the_realized_returns(btc_30m):
    labels = make_labels(btc_30m, LabelConfig(horizons=(1, 4)))
    assert list(labels.columns[4:]) == label_names(LabelConfig(horizons=(1, 4)))
    assert labels.index.equals(btc_30m.index)
    for h in (1, 4):
        ref = reference_labels(btc_30m, h)
        got = labels[f"fwd_logret_{h}"].to_numpy()
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
        # NaN exactly at the last h rows and the h rows before each gap
        assert np.isnan(got[-h:]).all()
        assert np.isnan(got).sum() > h * 9


def test_direction_and_dead_zone(btc_30m):
    cfg = LabelConfig(horizons=(1,), dead_zone=0.002)
    labels = make_labels(btc_30m, cfg)
    r, up = labels["fwd_logret_1"], labels["label_up_1"]
    assert (up[r > 0.002] == 1.0).all() and (up[r < -0.002] == 0.0).all()
    assert up[r.abs() <= 0.002].isna().all() and up[r.isna()].isna().all()
    assert 0.2 < up.isna().mean() < 0.8  # the dead zone removes a real share of bars
    no_zone = make_labels(btc_30m, LabelConfig(horizons=(1,)))
    flat = no_zone["fwd_logret_1"] == 0.0
    assert no_zone["label_up_1"][flat].isna().all()  # an unchanged close is neither up nor down
    assert no_zone["label_up_1"].notna().sum() == (no_zone["fwd_logret_1"].abs() > 0).sum()


def test_label_config_validation():
    with pytest.raises(ValidationError):
        LabelConfig(horizons=())
    with pytest.raises(ValidationError):
        LabelConfig(horizons=(1, 1))
    with pytest.raises(ValidationError):
        LabelConfig(dead_zone=-0.1)
    with pytest.raises(ValidationError):
        LabelConfig(bogus=1)


def test_multi_series_labels_align_with_input(btc_30m, candle_factory):
    other = candle_factory(500, seed=5, timeframe="30m")
    mixed = pd.concat([btc_30m.iloc[:500], other]).sample(frac=1.0, random_state=0)
    mixed = mixed.sort_values("timestamp", kind="stable").reset_index(drop=True)
    out = make_labels_multi(mixed)
    assert out.index.equals(mixed.index)
    for _, group in mixed.groupby(["exchange", "symbol", "timeframe"]):
        pd.testing.assert_frame_equal(out.loc[group.index], make_labels(group))


def test_empty_input_gives_empty_labels(btc_30m):
    out = make_labels(btc_30m.iloc[:0])
    assert len(out) == 0 and list(out.columns[4:]) == label_names()
