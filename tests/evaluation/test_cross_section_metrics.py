"""Cross-sectional ranking metrics by hand: rank IC, ICIR, top-minus-bottom spread, turnover."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from candlecast.evaluation.cross_section import per_bar, ranking_metrics, summarize


def test_perfect_reversed_and_too_few_coins():
    target = np.array([[0.03, 0.01, -0.02, 0.0], [0.0, 0.02, 0.01, -0.01],
                       [0.01, np.nan, np.nan, 0.02]])
    bars = per_bar(target, target, top=1, min_coins=3)
    assert bars["rank_ic"].iloc[:2].tolist() == pytest.approx([1.0, 1.0])
    assert bars["spread"].iloc[:2].tolist() == pytest.approx([0.05, 0.03])
    assert math.isnan(bars["rank_ic"].iloc[2])  # two coins: below min_coins
    assert bars["turnover"].iloc[1] == 1.0  # the best coin changed (A then B)
    reversed_ = per_bar(-target, target, top=1, min_coins=3)
    assert reversed_["rank_ic"].iloc[:2].tolist() == pytest.approx([-1.0, -1.0])
    assert reversed_["spread"].iloc[0] == pytest.approx(-0.05)


def test_summary_icir_and_turnover():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(400, 5))
    score = target + rng.normal(scale=2.0, size=target.shape)  # a weak, real signal
    stats = summarize(per_bar(score, target, top=1))
    assert 0.1 < stats["rank_ic"] < 0.6
    assert stats["icir"] == pytest.approx(stats["rank_ic"] / per_bar(score, target)[
        "rank_ic"].std(ddof=1))
    assert stats["ic_t_stat"] == pytest.approx(stats["icir"] * math.sqrt(400))
    assert stats["top_bottom_spread"] > 0 and stats["bars"] == 400
    sticky = np.tile(np.arange(5.0)[::-1], (50, 1))  # the same coin is always best
    assert summarize(per_bar(sticky, target[:50]))["turnover"] == 0.0


def test_ranking_metrics_per_fold_from_a_long_frame():
    times = pd.date_range("2024-01-01", periods=6, freq="30min", tz="UTC")
    rows = []
    for t, when in enumerate(times):
        for j, coin in enumerate("ABC"):
            y = float(j - t % 2)  # coin order of the target flips nothing: C > B > A
            rows.append({"series": coin, "timestamp": when, "fold": 1 + t // 3, "y": y,
                         "good": y, "bad": -y})
    frame = pd.DataFrame(rows)
    good = ranking_metrics(frame, "good", "y", list("ABC"))
    assert good["pooled"]["rank_ic"] == pytest.approx(1.0)
    assert set(good["folds"]) == {1, 2}
    assert ranking_metrics(frame, "bad", "y", list("ABC"))["folds"][2]["rank_ic"] == (
        pytest.approx(-1.0))
