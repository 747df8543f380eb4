"""Position sizing and caps against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from candlecast.risk import Reason, RiskConfig, SizingConfig
from candlecast.risk.sizing import cap_position, kelly_edge, size_position


def test_fixed_fractional_risks_the_configured_share_of_equity():
    cfg = SizingConfig(method="fixed_fractional", risk_per_trade=0.01)
    qty, reject, _ = size_position(cfg, 8760, equity=10_000, price=100, stop_distance=4.0)
    assert reject is None
    assert qty == pytest.approx(25.0)  # 1% of 10,000 = 100 at risk / 4 per unit
    qty, reject, _ = size_position(cfg, 8760, equity=10_000, price=100, stop_distance=math.nan)
    assert (qty, reject) == (0.0, Reason.REJECT_MISSING_VOLATILITY)


def test_vol_target_scales_notional_by_annualized_volatility():
    cfg = SizingConfig(method="vol_target", target_volatility=0.5)
    qty, reject, _ = size_position(cfg, 8760, equity=10_000, price=100, bar_volatility=0.01)
    annual = 0.01 * math.sqrt(8760)  # 0.9359...
    assert reject is None
    assert qty == pytest.approx(0.5 / annual * 10_000 / 100)  # 53.42 units
    assert qty == pytest.approx(53.4207, rel=1e-4)
    _, reject, _ = size_position(cfg, 8760, 10_000, 100, bar_volatility=0.0)
    assert reject == Reason.REJECT_MISSING_VOLATILITY


def test_fractional_kelly_with_edge_no_edge_and_cap():
    assert kelly_edge(0.6, 1.0) == pytest.approx(0.2)
    assert kelly_edge(0.4, 2.0) == pytest.approx(0.1)
    cfg = SizingConfig(method="kelly", kelly_fraction=0.25, kelly_cap=0.25)
    qty, reject, notes = size_position(cfg, 8760, 10_000, 100, probability=0.6, payoff_ratio=1.0)
    assert reject is None and notes == ()
    assert qty == pytest.approx(0.25 * 0.2 * 10_000 / 100)  # 5 units = 500 notional
    _, reject, _ = size_position(cfg, 8760, 10_000, 100, probability=0.5, payoff_ratio=1.0)
    assert reject == Reason.REJECT_NO_EDGE
    capped = SizingConfig(method="kelly", kelly_fraction=0.25, kelly_cap=0.1)
    # 0.25 * (0.99 - 0.01 / 5) = 0.247 > cap 0.1
    qty, _, notes = size_position(capped, 8760, 10_000, 100, probability=0.99, payoff_ratio=5.0)
    assert notes == (Reason.CAPPED_KELLY,)
    assert qty == pytest.approx(0.1 * 10_000 / 100)
    _, reject, _ = size_position(cfg, 8760, 10_000, 100, probability=math.nan)
    assert reject == Reason.REJECT_MISSING_PROBABILITY
    # missing payoff ratio falls back to the configured default (1.0)
    qty, _, _ = size_position(cfg, 8760, 10_000, 100, probability=0.6)
    assert qty == pytest.approx(5.0)


def test_caps_on_position_and_gross_exposure():
    cfg = SizingConfig(max_position_fraction=0.5, max_gross_exposure=1.0)
    qty, reject, notes = cap_position(cfg, 10_000, 100, qty=80, other_gross_notional=0)
    assert reject is None and notes == (Reason.CAPPED_POSITION,)
    assert qty == pytest.approx(50)
    qty, reject, notes = cap_position(cfg, 10_000, 100, qty=40, other_gross_notional=7_000)
    assert notes == (Reason.CAPPED_GROSS_EXPOSURE,) and qty == pytest.approx(30)
    qty, reject, _ = cap_position(cfg, 10_000, 100, qty=10, other_gross_notional=10_000)
    assert (qty, reject) == (0.0, Reason.REJECT_GROSS_EXPOSURE)
    notional_cap = SizingConfig(max_position_notional=2_000)
    qty, _, notes = cap_position(notional_cap, 10_000, 100, qty=50, other_gross_notional=0)
    assert qty == pytest.approx(20) and notes == (Reason.CAPPED_POSITION,)
    # exactly at the cap is not "capped" (float noise must not add a note)
    qty, _, notes = cap_position(SizingConfig(), 10_000, 3.0, 10_000 / 3.0, 0.0)
    assert notes == ()


def test_config_validation_names_the_parameter():
    with pytest.raises(ValidationError, match="risk_per_trade"):
        SizingConfig(risk_per_trade=-0.01)
    with pytest.raises(ValueError, match="fixed_fractional"):
        RiskConfig.model_validate({"exits": {"stop_atr_multiple": None, "stop_loss_pct": None,
                                             "breakeven_trigger_r": None}})
    with pytest.raises(ValueError, match="drawdown_scale_start"):
        RiskConfig.model_validate({"limits": {"drawdown_scale_start": 0.3,
                                              "drawdown_scale_end": 0.2}})
    with pytest.raises(ValueError, match="take_profit_r"):
        RiskConfig.model_validate({"sizing": {"method": "fixed_notional"},
                                   "exits": {"stop_atr_multiple": None, "take_profit_r": 2,
                                             "breakeven_trigger_r": None}})
    with pytest.raises(ValidationError, match="extra"):
        RiskConfig.model_validate({"sizing": {"methd": "kelly"}})
    cfg = RiskConfig()
    with pytest.raises(ValidationError):
        cfg.bars_per_year = 1  # frozen
