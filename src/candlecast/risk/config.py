"""Frozen, validated risk configuration (the ``risk:`` section of ``params.yaml``).

Three parts, each usable alone: :class:`SizingConfig` (how big), :class:`ExitConfig` (when out),
:class:`LimitsConfig` (when to stop trading). Fractions are plain fractions (``0.05`` = 5 %),
never percent numbers. ``None`` switches a rule off.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SizingMethod = Literal["fixed_notional", "fixed_fractional", "vol_target", "kelly"]


class SizingConfig(BaseModel):
    """Position sizing.

    * ``fixed_notional``: notional = ``notional_fraction`` x equity (plain signal strategies).
    * ``fixed_fractional``: lose ``risk_per_trade`` x equity if the initial stop is hit
      (qty = equity x risk / stop distance); needs an initial stop in :class:`ExitConfig`.
    * ``vol_target``: notional = equity x ``target_volatility`` / annualized volatility of the
      instrument (per-bar volatility is an input, annualized with ``bars_per_year``).
    * ``kelly``: notional = equity x min(``kelly_fraction`` x (p - (1 - p) / b), ``kelly_cap``)
      from a calibrated win probability p and payoff ratio b (inputs).

    Every method is then capped by ``max_position_fraction`` / ``max_position_notional`` and by
    ``max_gross_exposure`` across open positions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: SizingMethod = "fixed_fractional"
    notional_fraction: float = Field(default=1.0, gt=0, le=10)
    risk_per_trade: float = Field(default=0.01, gt=0, le=0.5)
    target_volatility: float = Field(default=0.5, gt=0, le=10)
    kelly_fraction: float = Field(default=0.25, gt=0, le=1)
    kelly_cap: float = Field(default=0.25, gt=0, le=10)
    default_payoff_ratio: float = Field(default=1.0, gt=0)
    max_position_fraction: float = Field(default=1.0, gt=0, le=10)
    max_position_notional: float | None = Field(default=None, gt=0)
    max_gross_exposure: float = Field(default=1.0, gt=0, le=10)


class ExitConfig(BaseModel):
    """Exit rules. Stops only ever tighten; when several apply the most protective one wins.

    * initial stop: ``stop_loss_pct`` (fixed % from entry) and/or ``stop_atr_multiple`` x ATR;
    * ``trailing_pct``: stop at best price since entry x (1 -/+ pct);
    * ``chandelier_atr_multiple``: stop at best price since entry -/+ k x current ATR;
    * ``breakeven_trigger_r``: once price has moved this many initial risks (R) in favour, the
      stop moves to the entry price;
    * ``time_stop_bars``: exit after this many bars in the trade;
    * take-profit at ``take_profit_pct`` from entry and/or ``take_profit_r`` x initial risk
      (the nearer one wins). A bar touching both stop and target counts as a stop.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stop_loss_pct: float | None = Field(default=None, gt=0, lt=1)
    stop_atr_multiple: float | None = Field(default=2.0, gt=0)
    take_profit_pct: float | None = Field(default=None, gt=0)
    take_profit_r: float | None = Field(default=None, gt=0)
    trailing_pct: float | None = Field(default=None, gt=0, lt=1)
    chandelier_atr_multiple: float | None = Field(default=3.0, gt=0)
    breakeven_trigger_r: float | None = Field(default=1.0, gt=0)
    time_stop_bars: int | None = Field(default=None, gt=0)

    @property
    def has_initial_stop(self) -> bool:
        return self.stop_loss_pct is not None or self.stop_atr_multiple is not None

    @property
    def uses_atr(self) -> bool:
        return self.stop_atr_multiple is not None or self.chandelier_atr_multiple is not None

    @model_validator(mode="after")
    def _needs_stop(self) -> ExitConfig:
        for name in ("take_profit_r", "breakeven_trigger_r"):
            if getattr(self, name) is not None and not self.has_initial_stop:
                raise ValueError(
                    f"exits.{name} is measured in initial risk (R) and needs an initial stop: "
                    "set exits.stop_loss_pct or exits.stop_atr_multiple, or set it to null"
                )
        return self


class LimitsConfig(BaseModel):
    """Account-level limits. A breach is a recorded decision (halt/reject), never an exception.

    * ``max_daily_loss``: equity below (1 - x) x equity at the start of the UTC day halts new
      entries until the next UTC day (and closes positions when ``close_on_halt``);
    * ``max_drawdown``: equity below (1 - x) x peak equity halts until an operator resets it;
    * sizes shrink linearly from 1 at drawdown ``drawdown_scale_start`` to
      ``drawdown_scale_floor`` at ``drawdown_scale_end`` and beyond;
    * ``max_trades_per_day`` entries per UTC day, ``cooldown_bars_after_loss`` bars without
      entries after a losing trade, ``max_concurrent_positions`` open at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_daily_loss: float | None = Field(default=0.05, gt=0, lt=1)
    max_drawdown: float | None = Field(default=0.30, gt=0, lt=1)
    drawdown_scale_start: float | None = Field(default=0.10, gt=0, lt=1)
    drawdown_scale_end: float | None = Field(default=0.20, gt=0, lt=1)
    drawdown_scale_floor: float = Field(default=0.25, ge=0, le=1)
    max_trades_per_day: int | None = Field(default=10, gt=0)
    cooldown_bars_after_loss: int = Field(default=0, ge=0)
    max_concurrent_positions: int = Field(default=1, gt=0)
    close_on_halt: bool = True

    @model_validator(mode="after")
    def _scale_thresholds(self) -> LimitsConfig:
        start, end = self.drawdown_scale_start, self.drawdown_scale_end
        if (start is None) != (end is None):
            raise ValueError(
                "limits.drawdown_scale_start and limits.drawdown_scale_end must both be set or "
                "both be null"
            )
        if start is not None and end is not None and not start < end:
            raise ValueError(
                f"limits.drawdown_scale_start ({start}) must be below drawdown_scale_end ({end})"
            )
        return self


class RiskConfig(BaseModel):
    """The whole risk engine configuration: ``risk:`` in ``params.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sizing: SizingConfig = SizingConfig()
    exits: ExitConfig = ExitConfig()
    limits: LimitsConfig = LimitsConfig()
    bars_per_year: float = Field(default=8760.0, gt=0)

    @model_validator(mode="after")
    def _sizing_needs_stop(self) -> RiskConfig:
        if self.sizing.method == "fixed_fractional" and not self.exits.has_initial_stop:
            raise ValueError(
                "sizing.method 'fixed_fractional' sizes by stop distance and needs an initial "
                "stop: set exits.stop_loss_pct or exits.stop_atr_multiple"
            )
        return self

    @classmethod
    def plain(cls, fraction: float = 1.0, bars_per_year: float = 8760.0) -> RiskConfig:
        """No exits, no limits, fixed notional: the event path then trades exactly the signal,
        which is what the vectorized path does (their agreement is tested)."""
        return cls(
            sizing=SizingConfig(
                method="fixed_notional",
                notional_fraction=fraction,
                max_position_fraction=max(1.0, fraction),
                max_gross_exposure=max(1.0, fraction),
            ),
            exits=ExitConfig(stop_atr_multiple=None, chandelier_atr_multiple=None,
                             breakeven_trigger_r=None),
            limits=LimitsConfig(max_daily_loss=None, max_drawdown=None, drawdown_scale_start=None,
                                drawdown_scale_end=None, max_trades_per_day=None),
            bars_per_year=bars_per_year,
        )
