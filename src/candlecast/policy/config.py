"""Frozen policy configuration (``policy:`` in ``params.yaml``) and its search space.

Fractions are plain fractions of equity (``0.5`` = 50 %); thresholds are multiples of the
round-trip cost of the configured execution style (:func:`candlecast.policy.round_trip_cost`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from candlecast.backtest.config import ExecutionConfig, ExecutionStyle


class PolicyConfig(BaseModel):
    """The cost-aware rule that turns forecasts into a target position in [-1, 1].

    * ``horizon``: the forecast horizon (bars) whose expected return is the edge;
    * enter when the expected return over ``horizon`` exceeds ``entry_margin`` x the round-trip
      cost (in the trade's direction); leave when it falls below ``exit_margin`` x that cost
      (``exit_margin < entry_margin``: hysteresis), but not before ``min_hold_bars`` bars;
    * size: ``vol_target`` (annualized) / the forecast annualized volatility, at most
      ``max_position`` (``vol_target: null`` = always ``max_position``);
    * ``allow_short``: long/short, else long-only;
    * no order for a change of the target smaller than ``min_change`` (fraction of equity),
      except to go flat.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(default=4, ge=1, le=10_000)
    entry_margin: float = Field(default=1.5, gt=0, le=100)
    exit_margin: float = Field(default=0.0, ge=-100, le=100)
    min_hold_bars: int = Field(default=2, ge=0, le=100_000)
    vol_target: float | None = Field(default=0.5, gt=0, le=10)
    max_position: float = Field(default=1.0, gt=0, le=1)
    allow_short: bool = False
    min_change: float = Field(default=0.1, ge=0, le=1)
    execution: ExecutionConfig = ExecutionConfig()

    @model_validator(mode="after")
    def _hysteresis(self) -> PolicyConfig:
        if not self.exit_margin < self.entry_margin:
            raise ValueError(
                f"policy.exit_margin ({self.exit_margin}) must be below policy.entry_margin "
                f"({self.entry_margin}): the exit threshold sits below the entry threshold"
            )
        return self

    def label(self) -> str:
        """A short readable id of this configuration (trial names, MLflow tags)."""
        ex = self.execution
        style = ex.entry[0] + ex.exit[0]
        if ex.uses_limits:
            style += f"{ex.limit_offset_bps:g}/{ex.expire_bars}{ex.on_expire[0]}"
        vol = "none" if self.vol_target is None else f"{self.vol_target:g}"
        return (f"h{self.horizon}-in{self.entry_margin:.2f}-out{self.exit_margin:.2f}"
                f"-hold{self.min_hold_bars}-vol{vol}-{'ls' if self.allow_short else 'lo'}-{style}")


class PolicySearchSpace(BaseModel):
    """What the walk-forward policy search (:mod:`candlecast.policy.tuning`) may choose from.

    ``horizons`` must be forecast horizons the zoo trains. Every configuration the search
    evaluates is counted in the deflated Sharpe's number of trials and joins the PBO universe.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizons: tuple[int, ...] = (4, 16)
    entry_margin: tuple[float, float] = (0.5, 4.0)
    #: the exit threshold as a share of the entry threshold (< 1: hysteresis; may be negative)
    exit_share: tuple[float, float] = (-0.5, 0.8)
    #: minimum hold as a share of the horizon
    hold_share: tuple[float, float] = (0.0, 1.0)
    vol_targets: tuple[float, ...] = (0.3, 0.5, 0.8)
    allow_short: tuple[bool, ...] = (False, True)
    entry_styles: tuple[ExecutionStyle, ...] = ("market", "limit")
    exit_styles: tuple[ExecutionStyle, ...] = ("market", "limit")
    limit_offsets_bps: tuple[float, ...] = (0.0, 5.0)
    expire_bars: tuple[int, ...] = (1, 4)
    on_expire: tuple[Literal["cancel", "market"], ...] = ("cancel", "market")

    @model_validator(mode="after")
    def _ranges(self) -> PolicySearchSpace:
        for name in ("entry_margin", "exit_share", "hold_share"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"policy search {name}: need low <= high, got ({lo}, {hi})")
        if self.entry_margin[0] <= 0:
            raise ValueError("policy search entry_margin must be > 0")
        if self.exit_share[1] >= 1:
            raise ValueError("policy search exit_share must stay below 1 (hysteresis)")
        for name in ("horizons", "vol_targets", "allow_short", "entry_styles", "exit_styles",
                     "limit_offsets_bps", "expire_bars", "on_expire"):
            if not getattr(self, name):
                raise ValueError(f"policy search {name} must list at least one value")
        return self


class PolicyTuning(BaseModel):
    """The walk-forward policy search (``policy.tuning``): Optuna (TPE, seeded) inside each
    fold, on the ensemble's out-of-sample forecasts of the folds before it, each candidate
    backtested net of costs through the risk engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    n_trials: int = Field(default=40, ge=1, le=10_000)
    seed: int = 42
    #: what the search maximizes over the tuning window: the net Sharpe or Calmar ratio of the
    #: book (the series' accounts together, equal capital each)
    objective: Literal["sharpe", "calmar"] = "sharpe"
    #: a candidate with fewer round trips than this per series and 1,000 bars is not eligible
    #: (too few trades to tell an edge from luck)
    min_trades_per_1000_bars: float = Field(default=1.0, ge=0)
    #: when even the best eligible candidate lost money over the tuning window, stay flat for
    #: the next window instead of trading it
    flat_unless_positive: bool = True
