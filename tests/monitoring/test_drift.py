"""Drift checks on REAL candle features: a synthetic shift is detected and named, the same
window unshifted is not, later windows of real data are rarely flagged (false-alarm rate), and
the Evidently report shows the very numbers the verdict used."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from candlecast.features import FeatureConfig, compute_features, feature_names
from candlecast.monitoring.config import DecayConfig, DriftConfig
from candlecast.monitoring.drift import (
    column_drift,
    drift_verdict,
    normed_wasserstein,
    performance,
    performance_decay,
)

NAMES = feature_names(FeatureConfig())
REF, CUR = 8000, 1000
#: reference = bars 13,200..21,199 of the bundled BTC 30m file, current = the next 1,000. (Of
#: the 26 windows of the false-alarm test, two are flagged: the ones holding the Nov 2018
#: crash and the Apr 2019 breakout; this one is an ordinary later window.)
START = 13_200
SHIFTED = ["logret_1", "rsi", "macd", "bb_width", "atr_pct", "volume_z", "adx", "stoch_k"]


@pytest.fixture(scope="module")
def btc_features(btc_30m) -> pd.DataFrame:
    return compute_features(btc_30m, FeatureConfig())


@pytest.fixture(scope="module")
def eth_features(repo_root) -> pd.DataFrame:
    from candlecast.data.sample import load_sample

    return compute_features(load_sample(repo_root / "data/sample", "bitfinex_30m", "ETH/USD"),
                            FeatureConfig())


def _windows(features: pd.DataFrame, start: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (features.iloc[start:start + REF].reset_index(drop=True),
            features.iloc[start + REF:start + REF + CUR].reset_index(drop=True))


def test_normed_wasserstein_by_hand():
    # W1 of a shift by 1 is 1; std of [0, 1, 2, 3] is sqrt(1.25)
    assert normed_wasserstein([0, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(1 / math.sqrt(1.25))
    assert normed_wasserstein([0, 1, 2, 3, np.nan], [0, 1, 2, 3]) == 0.0
    # a constant reference column is normed by the floor 0.001 (as Evidently does)
    assert normed_wasserstein([2.0, 2.0], [2.0, 2.001]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="finite values on both sides"):
        normed_wasserstein([np.nan], [1.0])


def test_unshifted_later_window_is_not_flagged_and_the_shifted_one_is(btc_features):
    config = DriftConfig()
    reference, current = _windows(btc_features, START)
    calm = drift_verdict(reference, current, NAMES, config)
    assert not calm.drifted and not calm.data_drift and calm.reasons == []
    assert calm.drift_share < config.drift_share

    shifted = current.copy()
    for name in NAMES:  # every feature moves by one reference standard deviation
        shifted[name] = shifted[name] + reference[name].std()
    verdict = drift_verdict(reference, shifted, NAMES, config)
    assert verdict.drifted and verdict.data_drift
    assert verdict.drifted_features == NAMES and verdict.drift_share == 1.0
    assert "data drift: 36 of 36 features" in verdict.reasons[0]


def test_a_partial_shift_names_exactly_the_shifted_features(btc_features):
    config = DriftConfig()
    reference, current = _windows(btc_features, START)
    before = set(drift_verdict(reference, current, NAMES, config).drifted_features)
    shifted = current.copy()
    for name in SHIFTED:
        shifted[name] = shifted[name] + 1.5 * reference[name].std()
    verdict = drift_verdict(reference, shifted, NAMES, config)
    assert set(verdict.drifted_features) == before | set(SHIFTED)
    # 8 + the naturally drifted of 36 is below the share threshold: named, but no alarm
    assert verdict.drift_share == pytest.approx(len(before | set(SHIFTED)) / 36)
    assert not verdict.data_drift


@pytest.mark.parametrize("which", ["btc", "eth"])
def test_false_alarm_rate_over_every_later_window_of_real_data(which, btc_features,
                                                               eth_features):
    """Each reference of 8,000 bars against the next 1,000, stepping 1,000 bars through two
    years of real data: crypto volatility regimes do move the features, but the default
    thresholds flag at most 10% of these unshifted windows."""
    features = btc_features if which == "btc" else eth_features
    config = DriftConfig()
    flagged = []
    for start in range(200, len(features) - REF - CUR, 1000):
        reference, current = _windows(features, start)
        flagged.append(drift_verdict(reference, current, NAMES, config).drifted)
    assert len(flagged) >= 25
    assert np.mean(flagged) <= 0.10, f"{sum(flagged)} of {len(flagged)} windows flagged"


def test_prediction_drift_and_decay_on_real_labels(btc_30m, btc_features):
    from candlecast.features import make_labels

    labels = make_labels(btc_30m)
    frame = btc_features.assign(y=labels["label_up_1"].to_numpy())
    reference, current = _windows(frame, START)
    # an honest predictor of the label's sign: the sign of the previous return, shrunk
    for part in (reference, current):
        part["prob_up"] = 0.5 + 0.02 * np.sign(part["logret_1"].fillna(0.0))
    config = DriftConfig()
    steady = drift_verdict(reference, current, NAMES, config)
    assert steady.decay is not None and not steady.decay["decayed"]
    assert not steady.prediction_drift

    broken = current.copy()
    broken["prob_up"] = np.where(broken["y"] == 1, 0.2, 0.8)  # confidently wrong
    verdict = drift_verdict(reference, broken, NAMES, config)
    assert verdict.drifted and verdict.prediction_drift
    assert set(verdict.decay["broken"]) == {"log_loss_increase", "accuracy_drop",
                                            "ece_increase"}
    assert verdict.recent_performance["accuracy"] == 0.0


def test_performance_decay_by_hand():
    ref = performance([1, 0, 1, 0], [0.8, 0.2, 0.6, 0.4])
    assert ref["accuracy"] == 1.0
    assert ref["log_loss"] == pytest.approx(-(2 * math.log(0.8) + 2 * math.log(0.6)) / 4)
    cur = performance([1, 0, 1, 0], [0.6, 0.4, 0.4, 0.6])
    decay = performance_decay(ref, cur, DecayConfig(max_accuracy_drop=0.4,
                                                    max_log_loss_increase=1.0,
                                                    max_ece_increase=1.0))
    assert decay["accuracy_drop"] == pytest.approx(0.5)
    assert decay["broken"] == ["accuracy_drop"] and decay["decayed"]


def test_refusals():
    frame = pd.DataFrame({"a": np.arange(200.0)})
    with pytest.raises(ValueError, match="fewer than ops.drift.min_rows"):
        drift_verdict(frame, frame.head(50), ["a"], DriftConfig())
    with pytest.raises(ValueError, match="missing"):
        column_drift(frame, frame, ["b"], 0.5)
    with pytest.raises(ValueError, match="all excluded"):
        drift_verdict(frame, frame, ["a"], DriftConfig(exclude=("a",)))


def test_the_evidently_report_shows_the_verdicts_numbers(btc_features, tmp_path):
    from candlecast.monitoring.report import build_report, evidently_scores, write_drift_outputs

    config = DriftConfig()
    reference, current = _windows(btc_features, START)
    reference = reference.assign(prob_up=0.5 + 0.1 * np.tanh(reference["logret_1"] * 50))
    current = current.assign(prob_up=0.5 + 0.1 * np.tanh(current["logret_1"] * 50))
    verdict = drift_verdict(reference, current, NAMES, config)
    snapshot = build_report(reference, current, NAMES, config)
    scores = evidently_scores(snapshot)
    for name in NAMES:
        assert scores[name] == pytest.approx(verdict.feature_scores[name], rel=1e-9)
    assert scores["prob_up"] == pytest.approx(verdict.prediction_score, rel=1e-9)
    out = write_drift_outputs(snapshot, verdict, tmp_path, "t1", {"lineage.git_commit": "x"})
    assert out["html"].stat().st_size > 100_000
    assert "<html" in out["html"].read_text()[:2000].lower()
    saved = pd.read_json(out["verdict"], typ="series")
    assert saved["drifted"] == verdict.drifted and saved["lineage"]["lineage.git_commit"] == "x"
    assert (tmp_path / "latest.html").exists()
