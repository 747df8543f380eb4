"""No look-ahead, and gaps restart everything that depends on continuity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feature_helpers import run_engine

from candlecast.features import (
    FeatureConfig,
    LabelConfig,
    compute_features,
    feature_names,
    first_valid_age,
    make_labels,
    output_columns,
)
from candlecast.features.series import series_arrays

COLUMNS = output_columns()


def perturb_future(candles: pd.DataFrame, cut: int, seed: int) -> pd.DataFrame:
    """Replace every candle from row ``cut`` on with different but valid values."""
    rng = np.random.default_rng(seed)
    out = candles.copy()
    n = len(out) - cut
    factor = np.exp(rng.normal(0, 0.05, n))
    for col in ("open", "high", "low", "close"):
        out.loc[cut:, col] = out.loc[cut:, col].to_numpy() * factor
    out.loc[cut:, "high"] *= 1.01
    out.loc[cut:, "volume"] = rng.lognormal(3, 1, n)
    return out


@pytest.mark.parametrize("cut", [1, 49, 5000, 8230, 8231, 20_000, 35_018])
def test_features_ignore_the_future(btc_30m, btc_batch, cut):
    """Truncating or rewriting candles from row ``cut`` on leaves rows before it bit-identical."""
    truncated = compute_features(btc_30m.iloc[:cut])
    pd.testing.assert_frame_equal(truncated[COLUMNS], btc_batch[COLUMNS].iloc[:cut],
                                  check_exact=True)
    rewritten = compute_features(perturb_future(btc_30m, cut, seed=cut))
    pd.testing.assert_frame_equal(rewritten[COLUMNS].iloc[:cut], btc_batch[COLUMNS].iloc[:cut],
                                  check_exact=True)
    if cut < len(btc_30m) - 60:  # the rewrite is real: later features do change
        later = rewritten[feature_names()].iloc[cut + 60]
        assert (later != btc_batch[feature_names()].iloc[cut + 60]).sum() > 20


def test_a_future_gap_does_not_change_the_past(btc_30m, btc_batch):
    with_gap = btc_30m.drop(index=[3000, 3001])
    out = compute_features(with_gap)
    pd.testing.assert_frame_equal(out[COLUMNS].iloc[:3000], btc_batch[COLUMNS].iloc[:3000],
                                  check_exact=True)


def test_labels_do_see_the_future(btc_30m):
    """The control: labels are future by definition, so rewriting the future changes them."""
    base = make_labels(btc_30m.iloc[:2000])
    changed = make_labels(perturb_future(btc_30m.iloc[:2000], 1000, seed=1))
    assert not np.allclose(base["fwd_logret_1"].iloc[999], changed["fwd_logret_1"].iloc[999])
    # a label looks at most the longest horizon ahead: rows before that are untouched
    longest = max(LabelConfig().horizons)
    assert longest == 48
    pd.testing.assert_frame_equal(base.iloc[:1000 - longest], changed.iloc[:1000 - longest])
    assert not np.allclose(base[f"fwd_logret_{longest}"].iloc[1000 - longest],
                           changed[f"fwd_logret_{longest}"].iloc[1000 - longest])


def test_each_run_is_computed_as_if_alone(btc_30m, btc_batch):
    """After a gap nothing is bridged: the features of a run equal those of the run by itself."""
    s = series_arrays(btc_30m)
    assert len(s.starts) >= 10
    for start, end in zip(s.starts, s.ends, strict=True):
        alone = compute_features(btc_30m.iloc[start:end])
        cols = [c for c in COLUMNS if c != "gap_reset"]
        pd.testing.assert_frame_equal(alone[cols], btc_batch[cols].iloc[start:end],
                                      check_exact=True)
    flags = btc_batch["gap_reset"].to_numpy()
    assert flags.sum() == len(s.starts) - 1 and flags[s.starts[1:]].all()


def test_removing_one_candle_restarts_warmup(candle_factory):
    candles = candle_factory(400, seed=3, timeframe="30m")
    holed = candles.drop(index=200)
    out = compute_features(holed).reset_index(drop=True)
    ages = first_valid_age(FeatureConfig())
    after = out.iloc[200:]  # first row after the hole (original row 201)
    assert after["gap_reset"].iloc[0] == 1.0 and after["bars_since_reset"].iloc[0] == 0.0
    for name, first in ages.items():
        nan = after[name].isna().to_numpy()[:60]
        assert np.array_equal(nan, np.arange(60) < first), name
    # the incremental engine makes the same cut
    inc = run_engine(holed).reset_index(drop=True)
    assert np.array_equal(inc.isna().to_numpy(), out[COLUMNS].isna().to_numpy())


def test_misaligned_step_is_a_gap(candle_factory):
    """A step that is positive but not the timeframe (here 31 minutes) is a gap too."""
    candles = candle_factory(100, seed=4, timeframe="30m")
    candles.loc[50:, "timestamp"] += pd.Timedelta(minutes=1)
    out = compute_features(candles)
    assert out["gap_reset"].tolist() == [0.0] * 50 + [1.0] + [0.0] * 49
    assert np.isnan(out["logret_1"].iloc[50]) and not np.isnan(out["logret_1"].iloc[51])
