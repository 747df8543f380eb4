"""Exit rules: initial stops, targets, trailing/chandelier/break-even, intrabar order."""

from __future__ import annotations

import math

import pytest

from candlecast.risk import ExitConfig, Reason
from candlecast.risk.exits import (
    check_stop_side,
    initial_stop,
    intrabar_exit,
    take_profit,
    time_stop_due,
    trail,
)

NAN = math.nan


def test_initial_stop_takes_the_most_protective_rule():
    cfg = ExitConfig(stop_loss_pct=0.05, stop_atr_multiple=2.0)
    assert initial_stop(cfg, 1, 100.0, atr=1.0) == pytest.approx(98.0)  # ATR 98 beats 95
    assert initial_stop(cfg, 1, 100.0, atr=5.0) == pytest.approx(95.0)  # % 95 beats 90
    assert initial_stop(cfg, -1, 100.0, atr=1.0) == pytest.approx(102.0)
    assert initial_stop(cfg, 1, 100.0, atr=NAN) == pytest.approx(95.0)  # ATR stop not available
    assert math.isnan(initial_stop(ExitConfig(stop_loss_pct=None), 1, 100.0, atr=NAN))


def test_take_profit_takes_the_nearer_target():
    cfg = ExitConfig(take_profit_pct=0.10, take_profit_r=2.0)
    assert take_profit(cfg, 1, 100.0, initial_risk=2.0) == pytest.approx(104.0)
    assert take_profit(cfg, 1, 100.0, initial_risk=10.0) == pytest.approx(110.0)
    assert take_profit(cfg, -1, 100.0, initial_risk=2.0) == pytest.approx(96.0)
    assert math.isnan(take_profit(ExitConfig(), 1, 100.0, 2.0))


def test_trailing_stop_follows_the_best_price_and_never_loosens():
    cfg = ExitConfig(stop_atr_multiple=None, chandelier_atr_multiple=None,
                     breakeven_trigger_r=None, trailing_pct=0.10)
    stop, reason, extreme, _ = trail(cfg, 1, 100.0, NAN, NAN, Reason.STOP_LOSS, 100.0, False,
                                     high=120.0, low=99.0, atr=NAN)
    assert (stop, reason, extreme) == (pytest.approx(108.0), Reason.TRAILING_STOP, 120.0)
    stop2, _, extreme2, _ = trail(cfg, 1, 100.0, NAN, stop, reason, extreme, False,
                                  high=110.0, low=100.0, atr=NAN)
    assert (stop2, extreme2) == (stop, 120.0)  # lower high: unchanged
    # short side mirrors
    stop, _, extreme, _ = trail(cfg, -1, 100.0, NAN, NAN, Reason.STOP_LOSS, 100.0, False,
                                high=101.0, low=80.0, atr=NAN)
    assert (stop, extreme) == (pytest.approx(88.0), 80.0)


def test_chandelier_ratchets_with_atr_but_never_loosens():
    cfg = ExitConfig(stop_atr_multiple=2.0, chandelier_atr_multiple=3.0, breakeven_trigger_r=None)
    stop, reason, extreme, _ = trail(cfg, 1, 100.0, 2.0, 98.0, Reason.STOP_LOSS, 100.0, False,
                                     high=106.0, low=101.0, atr=2.0)
    assert (stop, reason) == (pytest.approx(100.0), Reason.CHANDELIER_STOP)  # 106 - 3*2
    # ATR widens: the candidate (106 - 12 = 94) is looser, the stop stays
    stop2, reason2, _, _ = trail(cfg, 1, 100.0, 2.0, stop, reason, extreme, False,
                                 high=105.0, low=100.5, atr=4.0)
    assert (stop2, reason2) == (stop, Reason.CHANDELIER_STOP)
    # ATR shrinks with no new high: the stop still rises
    stop3, _, _, _ = trail(cfg, 1, 100.0, 2.0, stop2, reason2, extreme, False,
                           high=105.0, low=104.0, atr=1.0)
    assert stop3 == pytest.approx(103.0)


def test_breakeven_moves_the_stop_to_entry_after_one_r():
    cfg = ExitConfig(stop_atr_multiple=2.0, chandelier_atr_multiple=None, breakeven_trigger_r=1.0)
    # entry 100, initial risk 4 (stop 96): a high of 103.9 is < 1R, 104 is 1R
    out = trail(cfg, 1, 100.0, 4.0, 96.0, Reason.STOP_LOSS, 100.0, False, 103.9, 99.0, 2.0)
    assert out[0] == 96.0 and out[3] is False
    stop, reason, _, done = trail(cfg, 1, 100.0, 4.0, 96.0, Reason.STOP_LOSS, 100.0, False,
                                  104.0, 99.0, 2.0)
    assert (stop, reason, done) == (100.0, Reason.BREAKEVEN_STOP, True)


def test_intrabar_exit_assumes_stop_first_and_fills_gaps_at_the_open():
    # long, stop 95, target 110: a bar touching both -> stop at its level
    assert intrabar_exit(1, 95.0, 110.0, open_=100.0, high=111.0, low=94.0) == (95.0, False)
    assert intrabar_exit(1, 95.0, 110.0, 100.0, 111.0, 96.0) == (110.0, True)
    assert intrabar_exit(1, 95.0, 110.0, 100.0, 109.0, 96.0) is None
    assert intrabar_exit(1, 95.0, 110.0, open_=90.0, high=99.0, low=89.0) == (90.0, False)
    assert intrabar_exit(1, 95.0, 110.0, open_=115.0, high=116.0, low=94.0) == (115.0, True)
    # short mirror
    assert intrabar_exit(-1, 105.0, 90.0, 100.0, 106.0, 89.0) == (105.0, False)
    assert intrabar_exit(-1, 105.0, 90.0, 100.0, 104.0, 89.0) == (90.0, True)
    assert intrabar_exit(-1, 105.0, 90.0, open_=108.0, high=109.0, low=100.0) == (108.0, False)
    assert intrabar_exit(1, NAN, NAN, 100.0, 200.0, 1.0) is None


def test_time_stop_and_wrong_side_stop():
    cfg = ExitConfig(time_stop_bars=3)
    assert not time_stop_due(cfg, entry_bar=10, bar=12)
    assert time_stop_due(cfg, entry_bar=10, bar=13)
    assert not time_stop_due(ExitConfig(), 10, 10_000)
    with pytest.raises(ValueError, match="below the entry"):
        check_stop_side(1, 100.0, 101.0)
    with pytest.raises(ValueError, match="above the entry"):
        check_stop_side(-1, 100.0, 99.0)
