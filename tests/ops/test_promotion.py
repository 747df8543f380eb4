"""The pure champion/challenger core: paired bootstrap (hand-checked), windows, decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.ops.bootstrap import paired_bootstrap
from candlecast.ops.config import PromotionConfig
from candlecast.ops.promotion import decide_promotion, first_unseen_time, holdout_cut
from candlecast.ops.replay import next_chunk, replay_cut

CONFIG = PromotionConfig(min_periods=50, n_resamples=4000, block_size=1, alpha=0.1, seed=3)


def test_bootstrap_of_a_constant_difference_is_degenerate():
    base = np.linspace(-0.01, 0.01, 40)
    result = paired_bootstrap(base + 0.002, base, n_resamples=500, seed=1)
    assert result.mean_diff == pytest.approx(0.002)
    assert result.ci_low == pytest.approx(0.002) and result.ci_high == pytest.approx(0.002)
    assert result.p_value == 0.0


def test_bootstrap_p_value_matches_the_exact_resampling_distribution():
    # d = (1, 1, -1): a resample's mean is <= 0 iff it draws -1 at least twice of 3 times:
    # 3 * (1/3)^2 * (2/3) + (1/3)^3 = 7/27
    result = paired_bootstrap(np.array([1.0, 1.0, -1.0]), np.zeros(3), n_resamples=40_000,
                              seed=7)
    assert result.mean_diff == pytest.approx(1 / 3)
    assert result.p_value == pytest.approx(7 / 27, abs=0.01)


def test_a_block_as_long_as_the_series_resamples_rotations_only():
    d = np.array([0.3, -0.1, 0.2, -0.4, 0.5])
    result = paired_bootstrap(d, np.zeros(5), n_resamples=300, block_size=5, seed=0)
    # every circular block of the full length is a rotation: the same mean every time
    assert result.ci_low == pytest.approx(d.mean()) == pytest.approx(result.ci_high)
    assert result.block_size == 5


def test_bootstrap_refuses_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap(np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap(np.array([0.0, np.nan]), np.zeros(2))


def test_windows_by_hand():
    times = pd.date_range("2024-01-01", periods=10, freq="30min", tz="UTC")
    stacked = pd.Series(list(times) * 2)  # two series share the time axis
    assert holdout_cut(stacked, 3) == times[7]
    with pytest.raises(ValueError, match="eval_bars"):
        holdout_cut(stacked, 10)
    bar = pd.Timedelta("30min")
    assert first_unseen_time([times[2], times[5]], 4, bar) == times[9]
    assert replay_cut([times[9], times[8]], 3, bar) == times[6]
    candles = pd.DataFrame({"timestamp": times, "close": np.arange(10.0)})
    assert next_chunk(candles, times[3], 2)["close"].tolist() == [4.0, 5.0]
    assert next_chunk(candles, times[9], 2).empty


def test_promotion_decisions():
    rng = np.random.default_rng(0)
    champion = rng.normal(0, 0.001, 400)
    first = decide_promotion(champion, None, challenger_version="1", champion_version=None,
                             config=CONFIG)
    assert first.promote and first.reason == "no champion yet"

    better = decide_promotion(champion + 0.0005, champion + rng.normal(0, 1e-4, 400),
                              challenger_version="2", champion_version="1", config=CONFIG)
    assert better.promote and better.reason.startswith("beats champion v1")
    assert better.as_tags()["ops.decision"] == "promoted"
    assert float(better.as_tags()["ops.bootstrap.p_value"]) < 0.1

    worse = decide_promotion(champion - 0.0005, champion, challenger_version="2",
                             champion_version="1", config=CONFIG)
    assert not worse.promote and worse.reason.startswith("not better than champion v1")

    z = rng.normal(0, 0.001, 400)
    noise = decide_promotion(champion + z - z.mean() + 1e-6, champion,
                             challenger_version="2", champion_version="1", config=CONFIG)
    assert not noise.promote and "not significantly better" in noise.reason

    short = decide_promotion(champion[:10], champion[:10], challenger_version="2",
                             champion_version="1", config=CONFIG)
    assert not short.promote and "only 10 periods" in short.reason
    assert short.as_tags()["ops.decision"] == "rejected"


def test_statistics_by_hand():
    from candlecast.ops.bootstrap import statistic

    r = np.array([[0.01, -0.02, 0.03, 0.0]])
    assert statistic(r, "mean")[0] == pytest.approx(0.005)
    assert statistic(r, "sharpe")[0] == pytest.approx(0.005 / np.std(r, ddof=1))
    path = np.cumprod(1 + r[0])  # 1.01, 0.9898, 1.0195, 1.0195: drawdown 2 % from 1.01
    assert statistic(r, "calmar")[0] == pytest.approx(0.005 / (1 - path[1] / path[0]))
    with pytest.raises(ValueError, match="unknown statistic"):
        statistic(r, "sortino")


def test_promotion_on_net_sharpe_not_on_the_mean():
    """The challenger earns less per bar but far more steadily: by net Sharpe (the default
    criterion) it is promoted, by the mean it is not."""
    rng = np.random.default_rng(5)
    champion = 0.0010 + rng.normal(0, 0.02, 1500)  # mean 10 bps, very noisy
    challenger = 0.0006 + rng.normal(0, 0.002, 1500)  # 6 bps, ten times steadier
    sharpe = decide_promotion(challenger, champion, challenger_version="2",
                              champion_version="1",
                              config=CONFIG.model_copy(update={"block_size": 24}))
    assert CONFIG.criterion == "sharpe"
    assert sharpe.promote, sharpe.reason
    assert "sharpe difference" in sharpe.reason
    mean = decide_promotion(challenger, champion, challenger_version="2", champion_version="1",
                            config=CONFIG.model_copy(update={"criterion": "mean",
                                                             "block_size": 24}))
    assert not mean.promote
    # the resampling is paired: the same bars for both series in every resample
    result = paired_bootstrap(challenger, champion, n_resamples=500, block_size=24, seed=1,
                              kind="sharpe")
    assert result.mean_diff == pytest.approx(
        challenger.mean() / challenger.std(ddof=1) - champion.mean() / champion.std(ddof=1))
    assert result.p_value < 0.05
