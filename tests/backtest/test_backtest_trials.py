"""The trial universe (model x band) behind the PBO and the deflated Sharpe of the backtest."""

from __future__ import annotations

import numpy as np
import pytest

from candlecast.backtest import BacktestConfig, CostConfig, prepare_market, run_vectorized
from candlecast.backtest.signals import probability_signal
from candlecast.backtest.trials import run_trials, trial_name


@pytest.fixture(scope="module")
def market(btc_1h):
    return prepare_market(btc_1h.sort_values("timestamp").reset_index(drop=True).iloc[:3000])


def test_every_model_and_band_is_a_column_net_of_costs(market):
    rng = np.random.default_rng(3)
    momentum = 0.5 + 0.5 * np.tanh(np.diff(np.log(market.close), prepend=np.nan) * 50)
    probs = {"noise": rng.uniform(0.3, 0.7, market.n), "momentum": momentum,
             "silent": np.full(market.n, np.nan)}
    bands = (0.0, 0.05)
    trials = run_trials(market, probs, bands, CostConfig(), BacktestConfig())
    assert trials.names == tuple(trial_name(m, b) for m in probs for b in bands)
    assert trials.returns.shape == (market.n, 6)
    # a model with no predictions never trades: zero returns, Sharpe 0
    silent = [trials.names.index(trial_name("silent", b)) for b in bands]
    assert np.all(trials.returns[:, silent] == 0.0) and np.all(trials.sharpes[silent] == 0.0)
    # each column is the vectorized backtest of that signal, with the default costs
    k = trials.names.index(trial_name("noise", 0.05))
    direct = run_vectorized(market, probability_signal(probs["noise"], 0.05, True), CostConfig())
    equity = np.concatenate([[BacktestConfig().initial_equity], direct.equity])
    np.testing.assert_allclose(trials.returns[:, k], equity[1:] / equity[:-1] - 1.0)
    # costs on: the same trials without costs earn more
    free = run_trials(market, probs, bands, CostConfig.commission_only(0), BacktestConfig())
    assert free.returns[:, k].sum() > trials.returns[:, k].sum()


def test_trial_inputs_are_checked(market):
    with pytest.raises(ValueError, match="at least one model"):
        run_trials(market, {}, (0.0,), CostConfig(), BacktestConfig())
    with pytest.raises(ValueError, match="probabilities for"):
        run_trials(market, {"short": np.zeros(10)}, (0.0,), CostConfig(), BacktestConfig())
