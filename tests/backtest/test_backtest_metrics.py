"""Each metric against a case computed by hand (numbers in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from candlecast.backtest import metrics as m

# equity 100 -> 110 -> 99 -> 108.9: returns +10 %, -10 %, +10 %
EQUITY = np.array([100.0, 110.0, 99.0, 108.9])
RETURNS = np.array([0.1, -0.1, 0.1])


def test_returns_total_and_annualized():
    np.testing.assert_allclose(m.simple_returns(EQUITY), RETURNS)
    assert m.total_return(EQUITY) == pytest.approx(0.089)
    assert m.annualized_return(EQUITY, bars_per_year=3) == pytest.approx(0.089)  # 1 year
    assert m.annualized_return(EQUITY, bars_per_year=6) == pytest.approx(1.089**2 - 1)  # 1/2 yr
    assert m.annualized_return(np.array([100.0, 0.0]), 1) == -1.0


def test_volatility_sharpe_sortino():
    # mean 1/30; sample sd sqrt(((2/30)^2 * 2 + (4/30)^2) / 2) = 0.11547; sqrt(4) = 2
    assert m.annualized_volatility(RETURNS, 4) == pytest.approx(0.11547005 * 2)
    assert m.sharpe_ratio(RETURNS, 4) == pytest.approx((1 / 30) / 0.11547005 * 2)  # 0.57735
    # downside deviation sqrt((0 + 0.01 + 0) / 3) = 0.057735
    assert m.sortino_ratio(RETURNS, 4) == pytest.approx((1 / 30) / 0.057735027 * 2)  # 1.1547
    assert math.isnan(m.sharpe_ratio(np.array([0.01, 0.01, 0.01]), 4))
    assert math.isnan(m.sortino_ratio(np.array([0.01, 0.02]), 4))


def test_drawdown_duration_and_calmar():
    np.testing.assert_allclose(m.drawdown_curve(EQUITY), [0, 0, 0.1, 0.01])
    assert m.max_drawdown(EQUITY) == pytest.approx(0.1)  # 110 -> 99
    assert m.max_drawdown_duration(EQUITY) == 2  # bars 2 and 3 below 110
    assert m.max_drawdown_duration(np.array([1, 2, 1, 2, 1, 1, 3.0])) == 2  # back at 2: over
    assert m.max_drawdown_duration(np.array([1, 2, 1, 1.5, 1.9, 2.5])) == 3
    assert m.max_drawdown_duration(np.array([1, 2, 3.0])) == 0
    assert m.calmar_ratio(EQUITY, 3) == pytest.approx(0.089 / 0.1)


def test_trade_statistics():
    stats = m.trade_statistics(np.array([10.0, -5.0, 20.0, -15.0, 0.0]))
    assert stats == {"trade_count": 5, "win_rate": 0.4, "profit_factor": 1.5, "avg_win": 15.0,
                     "avg_loss": -10.0, "expectancy": 2.0}
    assert m.trade_statistics(np.array([1.0, 2.0]))["profit_factor"] == math.inf
    assert m.trade_statistics(np.array([]))["trade_count"] == 0


def test_exposure_and_turnover():
    assert m.exposure(np.array([0.0, 1.0, -2.0, 0.0])) == 0.5
    # 400 traded over 2 years (4 periods at 2 per year) on an average equity of 100
    assert m.annual_turnover(400.0, np.array([90, 100, 110, 95, 105.0]), 2) == pytest.approx(2.0)
