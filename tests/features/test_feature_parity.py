"""Batch == incremental, on real data with its gaps and on a synthetic series of edge cases."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from feature_helpers import random_candles, run_engine, run_engine_per_candle
from hypothesis import given, settings
from hypothesis import strategies as st

from candlecast.features import (
    FeatureConfig,
    IncrementalFeatureEngine,
    compute_features,
    first_valid_age,
    output_columns,
    priming_bars,
    warmup_bars,
)
from candlecast.features.config import aux_first_valid_age
from candlecast.features.series import series_arrays
from candlecast.features.streaming import FRESH_SUM_MAX

RTOL = 1e-9
ATOL = 1e-12  # for values that cross zero (returns, distances): ~10^4 x float64 eps


def assert_same_features(batch: pd.DataFrame, incremental: pd.DataFrame, names: list[str]) -> None:
    for name in names:
        a, b = batch[name].to_numpy(), incremental[name].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: NaN pattern differs"
        atol = 0.0 if name == "atr" else ATOL  # atr is in price units: relative only
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=atol, equal_nan=True, err_msg=name)


def test_batch_equals_incremental_on_real_data(btc_batch, btc_incremental, btc_30m):
    assert series_arrays(btc_30m).gap_reset.sum() >= 9  # the parity covers real gaps
    assert_same_features(btc_batch, btc_incremental, output_columns())
    # and the test is not vacuous: after warm-up almost every value is a number
    assert btc_batch[output_columns()].notna().mean().min() > 0.98


def test_batch_equals_incremental_on_edge_cases(edge_candles):
    batch = compute_features(edge_candles)
    assert_same_features(batch, run_engine_per_candle(edge_candles), output_columns())
    # the special cases were really hit (original rows 111..199 are a run of dead-flat bars)
    flat = batch[batch["timestamp"].between("2024-03-04 08:00", "2024-03-05 03:30")]
    assert len(flat) == 40 and flat["bars_since_reset"].min() >= 49
    for name, value in [("stoch_k", 50.0), ("bb_pct_b", 0.5), ("parkinson_12", 0.0),
                        ("garman_klass_48", 0.0), ("rv_48", 0.0), ("atr", 0.0), ("plus_di", 0.0),
                        ("adx", 0.0), ("rsi", 50.0), ("volume_z", 0.0), ("obv_slope", 0.0),
                        ("bb_width", 0.0)]:
        assert (flat[name] == value).all(), name
    assert (flat["macd"].abs() < 1e-12).all()  # EMAs of a constant: equal up to rounding
    const_volume = batch[batch["timestamp"].between("2024-03-06 23:30", "2024-03-07 05:00")]
    assert len(const_volume) == 12 and (const_volume["volume_z"] == 0.0).all()


def test_update_and_update_many_agree_exactly(btc_30m):
    candles = btc_30m.iloc[8000:10000]  # crosses a gap
    pd.testing.assert_frame_equal(run_engine_per_candle(candles), run_engine(candles),
                                  check_exact=True)


def test_nan_pattern_is_exactly_the_warmup_table(btc_batch, btc_30m):
    age = series_arrays(btc_30m).age
    cfg = FeatureConfig()
    for name, first in {**first_valid_age(cfg), **aux_first_valid_age(cfg)}.items():
        nan = btc_batch[name].isna().to_numpy()
        assert np.array_equal(nan, age < first), name


def test_non_default_config_parity(edge_candles):
    cfg = FeatureConfig(return_horizons=[1, 3], ma_windows=[5, 7], rsi_window=3, macd_fast=3,
                        macd_slow=5, macd_signal=2, bb_window=4, bb_k=1.5, atr_window=2,
                        adx_window=2, stoch_window=2, stoch_smooth=1, vol_windows=[2],
                        volume_z_window=2, obv_slope_window=3)
    batch = compute_features(edge_candles, cfg)
    assert_same_features(batch, run_engine(edge_candles, cfg), output_columns(cfg))


@settings(max_examples=25, deadline=None, database=None)
@given(
    n=st.integers(1, 160),
    seed=st.integers(0, 10_000),
    gap_every=st.integers(2, 60),
)
def test_parity_on_random_series_with_gaps(n, seed, gap_every):
    candles = random_candles(n, seed, gap_every)
    cfg = FeatureConfig(ma_windows=[3, 10], vol_windows=[4, 12], volume_z_window=6)
    assert_same_features(compute_features(candles, cfg), run_engine(candles, cfg),
                         output_columns(cfg))


def _resume(candles: pd.DataFrame, cut: int, roundtrip) -> pd.DataFrame:
    engine = IncrementalFeatureEngine(timeframe="30m")
    first = engine.update_many(candles.iloc[:cut])
    engine = roundtrip(engine)
    second = engine.update_many(candles.iloc[cut:])
    return pd.concat([first, second], ignore_index=True)


@pytest.mark.parametrize("roundtrip", [
    lambda e: pickle.loads(pickle.dumps(e)),
    lambda e: IncrementalFeatureEngine.from_state(json.loads(json.dumps(e.state_dict()))),
], ids=["pickle", "json-state"])
def test_persisted_state_resumes_exactly(btc_30m, roundtrip):
    candles = btc_30m.iloc[:3000]
    uninterrupted = IncrementalFeatureEngine(timeframe="30m").update_many(candles)
    for cut in (1, 37, 2222):  # mid warm-up and steady state
        resumed = _resume(candles, cut, roundtrip)
        pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)


def test_state_is_bounded(btc_30m):
    engine = IncrementalFeatureEngine(timeframe="30m")
    engine.update_many(btc_30m.iloc[:500])
    size_500 = len(json.dumps(engine.state_dict()))
    engine.update_many(btc_30m.iloc[500:5000])
    assert len(json.dumps(engine.state_dict())) < 1.2 * size_500


def test_restoring_foreign_state_is_rejected(btc_30m):
    engine = IncrementalFeatureEngine(timeframe="30m")
    engine.update_many(btc_30m.iloc[:100])
    state = engine.state_dict()
    state["config"]["ma_windows"] = [10, 20]
    with pytest.raises(ValueError, match="ma_windows|sma"):
        IncrementalFeatureEngine.from_state(state)
    with pytest.raises(ValueError, match="version"):
        IncrementalFeatureEngine.from_state({**engine.state_dict(), "version": 99})


def test_priming_with_recent_history_converges_to_batch(btc_30m, btc_batch):
    """A live engine primed with only the last ``priming_bars`` candles matches the batch
    features computed over the full history (the forgotten EMA seeds weigh < 1e-12)."""
    n = priming_bars()
    assert warmup_bars() < n < 1000
    for t in (3000, 7000, 20_000):
        s = series_arrays(btc_30m)
        assert s.age[t] >= n  # inside a long run: the batch saw more history than the engine
        engine = IncrementalFeatureEngine(timeframe="30m")
        engine.update_many(btc_30m.iloc[t - n : t])
        assert engine.is_warm
        row = engine.update(btc_30m.iloc[t].to_dict())
        got = np.array([row[name] for name in output_columns() if name != "bars_since_reset"])
        want = btc_batch.iloc[t][[c for c in output_columns() if c != "bars_since_reset"]]
        np.testing.assert_allclose(got, want.to_numpy(dtype=float), rtol=RTOL, atol=ATOL)
    fresh = IncrementalFeatureEngine(timeframe="30m")
    fresh.update_many(btc_30m.iloc[3000 : 3000 + warmup_bars() - 1])
    assert not fresh.is_warm


def test_long_windows_use_the_running_sum_path_and_still_agree(btc_30m):
    """Windows above ``FRESH_SUM_MAX`` keep a re-anchored running sum in the engine."""
    cfg = FeatureConfig(ma_windows=[10, 300], vol_windows=[12, 2 * FRESH_SUM_MAX + 7])
    assert max(cfg.ma_windows) > FRESH_SUM_MAX
    candles = btc_30m.iloc[:6000]
    assert_same_features(compute_features(candles, cfg), run_engine(candles, cfg),
                         output_columns(cfg))
