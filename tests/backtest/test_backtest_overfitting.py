"""DSR, PBO, block bootstrap and risk of ruin against hand-computed and published cases."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from candlecast.backtest.overfitting import (
    block_bootstrap,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    moments,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    risk_of_ruin,
    risk_of_ruin_even_bets,
)


def test_deflated_sharpe_reproduces_bailey_lopez_de_prado_2014():
    # The paper's example: annual SR 2.5 from 1,250 daily returns, skew -3, kurtosis 10,
    # N = 100 trials whose annualized SRs have variance 0.5 -> SR0 = 0.1132 daily, DSR = 0.9004
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=1e-4)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), sr0, 1250, skew=-3, kurtosis=10)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_expected_max_sharpe_by_hand():
    # N = 10, V = 0.04: sqrt(V) * ((1 - g) z(0.9) + g z(1 - 1/(10e)))
    g = 0.5772156649015329
    z = NormalDist().inv_cdf
    by_hand = 0.2 * ((1 - g) * z(0.9) + g * z(1 - 1 / (10 * math.e)))
    assert expected_max_sharpe(10, 0.04) == pytest.approx(by_hand)
    assert expected_max_sharpe(1, 0.04) == 0.0
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.04)


def test_deflated_sharpe_of_a_return_series():
    rng = np.random.default_rng(0)
    r = rng.normal(0.001, 0.01, 2_000)
    sharpe, skew, kurt = moments(r)
    one = deflated_sharpe_ratio(r, n_trials=1)
    assert one["dsr"] == pytest.approx(probabilistic_sharpe_ratio(sharpe, 0.0, 2_000, skew, kurt))
    many = [deflated_sharpe_ratio(r, n)["dsr"] for n in (1, 10, 100, 1000)]
    assert all(a > b for a, b in zip(many, many[1:], strict=False))  # more trials, less belief
    trials = rng.normal(0, 0.03, 50)
    given = deflated_sharpe_ratio(r, 50, trial_sharpes=trials)
    assert given["sharpe_variance"] == pytest.approx(np.var(trials, ddof=1))
    assert given["sharpe_threshold"] == pytest.approx(expected_max_sharpe(50, np.var(trials,
                                                                                      ddof=1)))


def test_pbo_hand_cases():
    # two trials, two blocks: whichever wins in-sample loses out-of-sample -> PBO = 1
    flip = np.array([[0.01, -0.01], [0.01, -0.01], [-0.01, 0.01], [-0.01, 0.01]])
    out = probability_of_backtest_overfitting(flip, n_blocks=2, metric="mean")
    assert out["pbo"] == 1.0 and out["n_splits"] == 2
    np.testing.assert_allclose(out["logits"], [math.log(0.5)] * 2)  # rank 1 of 2: w = 1/3
    # a trial that is best everywhere is never overfit -> PBO = 0
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, (400, 8))
    noise[:, 3] += 0.01
    assert probability_of_backtest_overfitting(noise, n_blocks=8)["pbo"] == 0.0
    # pure noise: the in-sample winner is a coin flip out of sample -> PBO about 1/2 on average
    # (one matrix alone varies a lot: its splits share data)
    pbos = [probability_of_backtest_overfitting(rng.normal(0, 0.01, (240, 11)), 6)["pbo"]
            for _ in range(40)]
    assert 0.38 < float(np.mean(pbos)) < 0.62
    pure = rng.normal(0, 0.01, (240, 11))
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(pure, n_blocks=3)


def test_block_bootstrap_cases():
    rng = np.random.default_rng(2)
    r = rng.normal(0.0005, 0.01, 1_000)
    total = float(np.prod(1 + r) - 1)
    # one block as long as the series: every resample is a rotation, same total return
    ci = block_bootstrap(r, n_samples=50, block_size=len(r), seed=3)
    assert ci["total_return"] == pytest.approx((total, total))
    a = block_bootstrap(r, n_samples=300, seed=4)
    assert a == block_bootstrap(r, n_samples=300, seed=4)  # deterministic
    lo, hi = a["total_return"]
    assert lo < total < hi
    dd_lo, dd_hi = a["max_drawdown"]
    assert 0 < dd_lo < dd_hi < 1
    with pytest.raises(ValueError, match="block_size"):
        block_bootstrap(r, block_size=0)


def test_risk_of_ruin_cases():
    # -10 % every trade: 0.9^6 = 0.53 survives a 50 % ruin line, 0.9^7 = 0.48 does not
    losses = np.full(5, -0.10)
    assert risk_of_ruin(losses, 0.5, n_trades=6) == 0.0
    assert risk_of_ruin(losses, 0.5, n_trades=7) == 1.0
    assert risk_of_ruin(np.full(5, 0.02), 0.5, n_trades=100) == 0.0
    assert risk_of_ruin_even_bets(0.6, 10) == pytest.approx((0.4 / 0.6) ** 10)  # 0.01734
    assert risk_of_ruin_even_bets(0.5, 10) == 1.0
    # a mix of wins and losses lands strictly between, and more trades means more ruin
    bets = np.array([0.1] * 5 + [-0.1] * 5)
    short, long_ = (risk_of_ruin(bets, 0.5, n_trades=k, n_sims=2000) for k in (20, 200))
    assert 0.0 < short < long_ < 1.0


@pytest.mark.parametrize("metric", ["sharpe", "mean"])
def test_pbo_from_block_sums_equals_scoring_the_rows(metric):
    """The fast path (per-block sums) gives the same logits as scoring concatenated rows."""
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0005, 0.01, size=(1203, 9))
    returns[:, 3] = returns[:, 2]  # a duplicated trial: ties must be ranked the same way
    returns[:, 5] = 0.0            # an always-flat trial: Sharpe 0
    direct = {
        "sharpe": lambda b: np.where(b.std(axis=0, ddof=1) > 0,
                                     b.mean(axis=0) / np.where(b.std(axis=0, ddof=1) > 0,
                                                               b.std(axis=0, ddof=1), 1), 0.0),
        "mean": lambda b: b.mean(axis=0),
    }[metric]
    fast = probability_of_backtest_overfitting(returns, 10, metric)
    slow = probability_of_backtest_overfitting(returns, 10, direct)
    assert fast["n_splits"] == slow["n_splits"] == 252
    np.testing.assert_allclose(fast["logits"], slow["logits"])
    assert fast["pbo"] == slow["pbo"]
