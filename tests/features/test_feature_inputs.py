"""Bad input is refused with a clear error; multi-series input is grouped; floats stay honest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feature_helpers import run_engine
from pydantic import ValidationError

from candlecast.features import (
    FeatureConfig,
    IncrementalFeatureEngine,
    compute_features,
    compute_features_multi,
    feature_names,
    make_labels,
    output_columns,
    warmup_bars,
)


@pytest.mark.parametrize("fn", [compute_features, make_labels], ids=["features", "labels"])
def test_duplicate_and_unsorted_timestamps_raise(btc_30m, fn):
    small = btc_30m.iloc[:100]
    dup = pd.concat([small.iloc[:50], small.iloc[49:]]).reset_index(drop=True)
    with pytest.raises(ValueError, match="duplicate timestamp at rows 49 and 50"):
        fn(dup)
    swapped = small.iloc[[*range(30), 31, 30, *range(32, 100)]].reset_index(drop=True)
    with pytest.raises(ValueError, match="not sorted ascending at rows 30 and 31"):
        fn(swapped)


def test_real_file_with_disordered_stamps_is_refused(btc_1h):
    """The Coinbase sample has 12-hour-clock stamps that go backwards: never silently sorted."""
    with pytest.raises(ValueError, match="not sorted ascending|duplicate timestamp"):
        compute_features(btc_1h)


def test_engine_refuses_duplicates_and_keeps_its_state(btc_30m):
    candles = btc_30m.iloc[:300].to_dict("records")
    engine = IncrementalFeatureEngine(timeframe="30m")
    reference = IncrementalFeatureEngine(timeframe="30m")
    for candle in candles[:200]:
        engine.update(candle)
        reference.update(candle)
    with pytest.raises(ValueError, match="duplicate candle"):
        engine.update(candles[199])
    with pytest.raises(ValueError, match="out-of-order candle"):
        engine.update(candles[150])
    with pytest.raises(ValueError, match="prices must be finite and > 0"):
        engine.update({**candles[200], "close": float("nan")})
    with pytest.raises(ValueError, match="volume must be finite"):
        engine.update({**candles[200], "volume": -1.0})
    with pytest.raises(ValueError, match="timeframe"):
        engine.update({**candles[200], "timeframe": "1h"})
    with pytest.raises(ValueError, match="naive"):
        engine.update({**candles[200], "timestamp": candles[200]["timestamp"].tz_localize(None)})
    # none of the refused candles touched the state
    assert engine.update(candles[200]) == reference.update(candles[200])


@pytest.mark.parametrize(("column", "value", "message"), [
    ("close", np.nan, "close must be finite and > 0; row 7"),
    ("low", 0.0, "low must be finite and > 0; row 7"),
    ("high", np.inf, "high must be finite and > 0; row 7"),
    ("volume", -1.0, "volume must be finite and >= 0; row 7"),
])
def test_bad_values_raise_naming_the_row(candle_factory, column, value, message):
    candles = candle_factory(20)
    candles.loc[7, column] = value
    with pytest.raises(ValueError, match=message):
        compute_features(candles)


def test_naive_timestamps_and_missing_columns_raise(candle_factory):
    candles = candle_factory(20)
    with pytest.raises(ValueError, match="tz-aware"):
        compute_features(candles.assign(timestamp=candles["timestamp"].dt.tz_localize(None)))
    with pytest.raises(ValueError, match=r"missing columns \['volume'\]"):
        compute_features(candles.drop(columns="volume"))


def test_multi_series_is_refused_by_the_single_series_function(btc_30m, candle_factory):
    mixed = pd.concat([btc_30m.iloc[:50], candle_factory(50, timeframe="30m")])
    with pytest.raises(ValueError, match="2 series.*_multi"):
        compute_features(mixed)


def test_multi_series_helper_matches_per_series(btc_30m, candle_factory):
    other = candle_factory(700, seed=9, timeframe="1h")
    mixed = pd.concat([btc_30m.iloc[1000:1700], other]).sort_values("timestamp", kind="stable")
    mixed = mixed.reset_index(drop=True)
    out = compute_features_multi(mixed)
    assert out.index.equals(mixed.index)
    assert out["timestamp"].equals(mixed["timestamp"])
    for _, group in mixed.groupby(["exchange", "symbol", "timeframe"]):
        pd.testing.assert_frame_equal(out.loc[group.index], compute_features(group))


def test_output_shape_and_dtypes(btc_batch, btc_30m):
    assert list(btc_batch.columns) == ["timestamp", "exchange", "symbol", "timeframe",
                                       *output_columns()]
    assert len(btc_batch) == len(btc_30m) and btc_batch.index.equals(btc_30m.index)
    assert (btc_batch[output_columns()].dtypes == np.float64).all()
    assert not np.isinf(btc_batch[output_columns()].to_numpy()).any()
    assert warmup_bars() == 50 and len(feature_names()) == 36
    assert compute_features(btc_30m.iloc[:0]).columns.tolist() == btc_batch.columns.tolist()


def test_features_are_scale_free(btc_30m):
    """Multiplying every price by 1000 (and volume by anything) changes no model feature."""
    scaled = btc_30m.iloc[:3000].copy()
    scaled[["open", "high", "low", "close"]] *= 1000.0
    scaled["volume"] *= 7.0
    a = compute_features(btc_30m.iloc[:3000])[feature_names()]
    b = compute_features(scaled)[feature_names()]
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12)


def test_config_is_frozen_and_validated():
    cfg = FeatureConfig()
    with pytest.raises(ValidationError):
        cfg.rsi_window = 3  # type: ignore[misc]
    for bad in ({"macd_fast": 26, "macd_slow": 12}, {"ma_windows": []}, {"ma_windows": [1]},
                {"return_horizons": [4, 4]}, {"bb_k": 0}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            FeatureConfig(**bad)
    assert FeatureConfig(ma_windows=[5, 10]).ma_windows == (5, 10)


def test_no_floating_point_error_is_hidden(btc_30m, edge_candles):
    """With every numpy FP warning an error, the batch path runs clean on real data and on the
    degenerate candles (zero ranges, zero volume, flat closes): no 0/0 or log(0) becomes a
    silent NaN. (The incremental engine is plain Python, which raises on these by itself.)"""
    old = np.seterr(all="raise")
    try:
        for candles in (btc_30m, edge_candles):
            feats = compute_features(candles)
            make_labels(candles)
            run_engine(candles.iloc[:2000])
            assert not np.isinf(feats[output_columns()].to_numpy()).any()
    finally:
        np.seterr(**old)
