"""Metrics: exact values by hand, scikit-learn/scipy as independent checks, tidy tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn import calibration as skcal
from sklearn import metrics as skm

from candlecast.evaluation.metrics import (
    METRIC_NAMES,
    MetricsConfig,
    accuracy,
    balanced_accuracy,
    brier_score,
    calibration_curve,
    calibration_table,
    direction_metrics,
    expected_calibration_error,
    fold_summary,
    information_coefficient,
    log_loss,
    metrics_long,
    metrics_table,
    roc_auc,
    sign_pnl,
    top_confidence_accuracy,
)

Y = np.array([1, 0, 1, 1, 0])
P = np.array([0.9, 0.2, 0.6, 0.4, 0.7])


def test_hand_computed_values():
    expected_ll = -sum(math.log(v) for v in (0.9, 0.8, 0.6, 0.4, 0.3)) / 5
    assert log_loss(Y, P) == pytest.approx(expected_ll, abs=1e-12)
    assert brier_score(Y, P) == pytest.approx((0.01 + 0.04 + 0.16 + 0.36 + 0.49) / 5)
    # predictions up, down, up, down, up -> right, right, right, wrong, wrong
    assert accuracy(Y, P) == pytest.approx(3 / 5)
    # recall of ups 2/3, of downs 1/2
    assert balanced_accuracy(Y, P) == pytest.approx((2 / 3 + 1 / 2) / 2)
    # positive/negative pairs ranked correctly: (.9>.2, .9>.7, .6>.2, .4>.2) of 6
    assert roc_auc(Y, P) == pytest.approx(4 / 6)
    # ties count half
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # 0.5 exactly predicts down
    assert accuracy([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_one_class_and_empty_inputs_are_nan_not_errors():
    assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert balanced_accuracy([1, 1], [0.9, 0.1]) == pytest.approx(0.5)
    assert math.isnan(log_loss([], []))
    assert math.isnan(information_coefficient([0.5, 0.5, 0.5], [0.1, -0.2, 0.3]))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="NaN"):
        log_loss([1, 0], [0.5, np.nan])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1, 0], [1.2, 0.1])
    with pytest.raises(ValueError, match="0 or 1"):
        accuracy([2, 0], [0.5, 0.1])
    with pytest.raises(ValueError, match="same length"):
        roc_auc([1, 0, 1], [0.5, 0.1])


def test_against_scikit_learn_and_scipy():
    rng = np.random.default_rng(7)
    p = rng.uniform(0.01, 0.99, 3000)
    y = (rng.uniform(size=3000) < p**1.3).astype(int)
    ret = (p - 0.5) * 0.01 + rng.normal(0, 0.01, 3000)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert brier_score(y, p) == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p > 0.5))
    assert balanced_accuracy(y, p) == pytest.approx(skm.balanced_accuracy_score(y, p > 0.5))
    assert information_coefficient(p, ret) == pytest.approx(spearmanr(p, ret).statistic, rel=1e-10)
    curve = calibration_curve(y, p, n_bins=10)
    used = curve[curve["count"] > 0]
    frac, mean = skcal.calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(used["frac_up"], frac, rtol=1e-12)
    np.testing.assert_allclose(used["mean_prob"], mean, rtol=1e-12)
    assert curve["count"].sum() == 3000


def test_calibration_curve_keeps_empty_bins_and_quantile_bins_are_balanced():
    curve = calibration_curve([1, 0, 1], [0.05, 0.07, 0.95], n_bins=4)
    assert curve["count"].tolist() == [2, 0, 0, 1]
    assert curve["frac_up"].iloc[0] == pytest.approx(0.5)
    assert math.isnan(curve["mean_prob"].iloc[1])
    p = np.random.default_rng(0).beta(2, 5, 1000)
    quantile = calibration_curve(np.zeros(1000), p, n_bins=5, strategy="quantile")
    assert quantile["count"].tolist() == [200] * 5
    constant = calibration_curve([1, 0, 1], [0.5, 0.5, 0.5], n_bins=5, strategy="quantile")
    assert constant["count"].sum() == 3 and constant["p_low"].iloc[0] == 0.0
    # perfectly calibrated in each bin -> zero ECE; constant 0.8 for 50% ups -> 0.3
    assert expected_calibration_error([1, 0], [0.8, 0.8]) == pytest.approx(0.3)


def test_top_confidence_accuracy_by_hand():
    # confidences .4, .3, .1, .1, .2 -> top 40% (2 rows) are rows 0 and 1, both right
    assert top_confidence_accuracy(Y, P, 0.4) == pytest.approx(1.0)
    # top 60%: rows 0, 1, 4 -> row 4 (0.7 for a down) is wrong
    assert top_confidence_accuracy(Y, P, 0.6) == pytest.approx(2 / 3)
    # at least one row
    assert top_confidence_accuracy(Y, P, 0.01) == pytest.approx(1.0)


def test_sign_pnl_by_hand():
    p = np.array([0.7, 0.7, 0.3, 0.5, 0.8])
    ret = np.array([0.01, -0.02, -0.03, 0.04, 0.01])
    pnl = sign_pnl(p, ret, cost_bps=10)
    assert pnl.position.tolist() == [1, 1, -1, 0, 1]
    assert pnl.turnover.tolist() == [1, 0, 2, 1, 1]
    assert pnl.gross.sum() == pytest.approx(0.01 - 0.02 + 0.03 + 0.0 + 0.01)
    assert pnl.net.sum() == pytest.approx(0.03 - 5 * 0.001)
    banded = sign_pnl(p, ret, band=0.25, cost_bps=10)
    assert banded.position.tolist() == [0, 0, 0, 0, 1]
    # two interleaved series each start flat and are sequenced separately
    grouped = sign_pnl(
        [0.9, 0.9, 0.9, 0.1], [0.01, 0.01, 0.01, 0.01], cost_bps=10, groups=["a", "b", "a", "b"]
    )
    assert grouped.turnover.tolist() == [1, 1, 0, 2]


def test_direction_metrics_names_and_values():
    out = direction_metrics(Y, P, ret=np.array([0.01, -0.01, 0.02, 0.01, -0.02]))
    assert tuple(out) == METRIC_NAMES
    assert out["log_loss"] == pytest.approx(log_loss(Y, P))
    assert out["base_rate"] == pytest.approx(0.6)
    assert out["exposure"] == pytest.approx(1.0)
    no_ret = direction_metrics(Y, P)
    assert math.isnan(no_ret["ic"]) and math.isnan(no_ret["pnl_net"])


def _predictions() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    t = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC")
    for model, skill in (("good", 0.3), ("coin", 0.0)):
        for series in ("BTC", "ETH"):
            ret = rng.normal(0, 0.01, 60)
            prob = np.clip(0.5 + skill * np.sign(ret) + rng.normal(0, 0.05, 60), 0.01, 0.99)
            rows.append(
                pd.DataFrame(
                    {
                        "model": model,
                        "series": series,
                        "timestamp": t,
                        "fold": np.repeat([0, 1, 2], 20),
                        "y": (ret > 0).astype(int),
                        "prob_up": prob,
                        "ret": ret,
                        "regime": rng.integers(0, 2, 60),
                    }
                )
            )
    frame = pd.concat(rows, ignore_index=True)
    return frame.sample(frac=1.0, random_state=0)  # row order must not matter


def test_metrics_tables_per_fold_model_and_regime():
    preds = _predictions()
    config = MetricsConfig(cost_bps=5)
    per_fold = metrics_table(preds, ("model", "fold"), config=config)
    assert list(per_fold.columns) == ["model", "fold", "status", "error", *METRIC_NAMES]
    assert len(per_fold) == 6 and (per_fold["n"] == 40).all()
    pooled = metrics_table(preds, ("model",), config=config).set_index("model")
    assert pooled.loc["good", "accuracy"] > 0.9 > pooled.loc["coin", "accuracy"]
    # per-row PnL is computed once per model and series in time order, so the parts add up
    per_regime = metrics_table(preds, ("model", "regime"), config=config)
    for frame in (per_fold, per_regime):
        sums = frame.groupby("model")[["pnl_net", "turnover"]].sum()
        np.testing.assert_allclose(sums["pnl_net"], pooled["pnl_net"].loc[sums.index])
        np.testing.assert_allclose(sums["turnover"], pooled["turnover"].loc[sums.index])
    # pooled PnL equals sequencing each series by hand
    one = preds[(preds.model == "good") & (preds.series == "BTC")].sort_values("timestamp")
    two = preds[(preds.model == "good") & (preds.series == "ETH")].sort_values("timestamp")
    by_hand = sum(sign_pnl(s.prob_up, s.ret, cost_bps=5).net.sum() for s in (one, two))
    assert pooled.loc["good", "pnl_net"] == pytest.approx(by_hand)
    # metrics of a group equal the metrics of that subset
    sub = preds[(preds.model == "coin") & (preds.fold == 1)]
    row = per_fold[(per_fold.model == "coin") & (per_fold.fold == 1)].iloc[0]
    assert row["auc"] == pytest.approx(roc_auc(sub.y, sub.prob_up))


def test_failed_folds_stay_visible_and_summaries():
    preds = _predictions()
    preds = preds[~((preds.model == "coin") & (preds.fold == 2))]
    failures = pd.DataFrame({"model": ["coin"], "fold": [2], "error": ["out of memory"]})
    per_fold = metrics_table(preds, ("model", "fold"), failures=failures)
    failed = per_fold[per_fold.status == "failed"]
    assert failed[["model", "fold", "error"]].values.tolist() == [["coin", 2, "out of memory"]]
    assert failed[list(METRIC_NAMES)].isna().all(axis=None)
    summary = fold_summary(per_fold).set_index("model")
    assert summary.loc["coin", "n_folds"] == 2 and summary.loc["coin", "n_failed_folds"] == 1
    ok = per_fold[(per_fold.model == "good")]
    assert summary.loc["good", "log_loss_mean"] == pytest.approx(ok["log_loss"].mean())
    assert summary.loc["good", "log_loss_std"] == pytest.approx(ok["log_loss"].std())
    long = metrics_long(per_fold, ["model", "fold"])
    assert set(long["metric"]) == set(METRIC_NAMES)
    assert len(long) == len(per_fold) * len(METRIC_NAMES)


def test_table_errors_are_clear():
    preds = _predictions()
    with pytest.raises(ValueError, match=r"missing columns \['prob_up'\]"):
        metrics_table(preds.drop(columns="prob_up"))
    with pytest.raises(ValueError, match="cannot group by"):
        metrics_table(preds, ("model", "horizon"))
    with pytest.raises(ValueError, match="two rows for the same"):
        metrics_table(pd.concat([preds, preds.iloc[:1]]))


def test_calibration_table_stacks_groups():
    table = calibration_table(_predictions(), ("model",), n_bins=5)
    assert table.groupby("model")["count"].sum().tolist() == [120, 120]
    assert list(table.columns[:2]) == ["model", "bin"]
