"""Frozen portfolio configuration (``portfolio:`` in ``params.yaml``) and its search space.

Weights are signed fractions of the book's equity (``0.25`` = a quarter of equity long in that
coin). Costs are the cost model's; the cost gate compares an expected gain with them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from candlecast.backtest.config import ExecutionConfig, ExecutionStyle
from candlecast.policy.config import PolicyTuning

Mode = Literal["long_only", "long_short"]
Weighting = Literal["equal", "inverse_vol", "risk_parity"]


class PortfolioConfig(BaseModel):
    """How forecasts across coins become one book's target weights
    (:class:`~candlecast.portfolio.construct.PortfolioConstructor`).

    * ``horizon``: the forecast horizon (bars) whose expected return (relative to the basket)
      ranks the coins and prices the cost gate;
    * ``mode``: ``long_only`` (the ``top_k`` best coins) or ``long_short`` (``top_k`` long,
      ``top_k`` short, each side half of ``gross``: market neutral in money);
    * turnover: a held coin stays while its rank is within ``top_k + buffer`` (Qlib's
      TopkDropout) and at least ``min_hold_bars``; at most ``max_replacements`` coins are
      swapped per rebalance; decisions only on bars whose number is a multiple of
      ``rebalance_every``; no order for a weight change below ``min_trade``; a rebalance only
      when its expected gain is at least ``cost_margin`` x its cost;
    * weights within a side: ``equal``, ``inverse_vol`` or ``risk_parity`` (equal risk
      contributions under the single-index covariance);
    * risk: the book's volatility scaled to ``vol_target`` (annualized; None: ``gross`` as
      is), then capped: each coin ``max_weight``, the book ``max_gross`` (sum of absolute
      weights), ``max_net`` (absolute sum) and ``max_beta`` (absolute beta to the basket: the
      correlation limit; None: off).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(default=16, ge=1, le=10_000)
    mode: Mode = "long_only"
    top_k: int = Field(default=2, ge=1, le=1000)
    buffer: int = Field(default=1, ge=0, le=1000)
    max_replacements: int | None = Field(default=None, ge=1, le=1000)
    min_hold_bars: int = Field(default=0, ge=0, le=100_000)
    weighting: Weighting = "equal"
    gross: float = Field(default=1.0, gt=0, le=10)
    vol_target: float | None = Field(default=None, gt=0, le=10)
    max_gross: float = Field(default=1.0, gt=0, le=10)
    max_net: float = Field(default=1.0, ge=0, le=10)
    max_weight: float = Field(default=0.5, gt=0, le=10)
    max_beta: float | None = Field(default=None, ge=0, le=10)
    rebalance_every: int = Field(default=1, ge=1, le=100_000)
    min_trade: float = Field(default=0.02, ge=0, le=1)
    cost_margin: float = Field(default=1.0, ge=0, le=100)
    execution: ExecutionConfig = ExecutionConfig()

    @model_validator(mode="after")
    def _consistent(self) -> PortfolioConfig:
        if self.gross > self.max_gross:
            raise ValueError(f"portfolio.gross ({self.gross}) must not exceed max_gross "
                             f"({self.max_gross})")
        return self

    def label(self) -> str:
        """A short readable id of this configuration (trial names, MLflow tags)."""
        ex = self.execution
        style = ex.entry[0] + ex.exit[0]
        vol = "none" if self.vol_target is None else f"{self.vol_target:g}"
        return (f"h{self.horizon}-{'lo' if self.mode == 'long_only' else 'ls'}{self.top_k}"
                f"+{self.buffer}-{self.weighting}-every{self.rebalance_every}"
                f"-gate{self.cost_margin:.2f}-vol{vol}-{style}")


class PortfolioSearchSpace(BaseModel):
    """What the walk-forward portfolio search may choose from; the rest comes from the
    default configuration. Every configuration evaluated counts in the deflated Sharpe's
    number of trials and joins the PBO universe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizons: tuple[int, ...] = (16, 48)
    modes: tuple[Mode, ...] = ("long_only", "long_short")
    top_k: tuple[int, ...] = (1, 2)
    buffer: tuple[int, ...] = (0, 1, 2)
    weighting: tuple[Weighting, ...] = ("equal", "inverse_vol", "risk_parity")
    rebalance_every: tuple[int, ...] = (8, 16, 48)
    cost_margin: tuple[float, float] = (0.5, 3.0)
    entry_styles: tuple[ExecutionStyle, ...] = ("market",)
    exit_styles: tuple[ExecutionStyle, ...] = ("market",)

    @model_validator(mode="after")
    def _ranges(self) -> PortfolioSearchSpace:
        lo, hi = self.cost_margin
        if not 0 <= lo <= hi:
            raise ValueError(f"portfolio search cost_margin: need 0 <= low <= high, got "
                             f"({lo}, {hi})")
        for name in ("horizons", "modes", "top_k", "buffer", "weighting", "rebalance_every",
                     "entry_styles", "exit_styles"):
            if not getattr(self, name):
                raise ValueError(f"portfolio search {name} must list at least one value")
        return self


class PortfolioBaselines(BaseModel):
    """The portfolio's baselines, fixed up front (never tuned), on the same bars and costs:
    the equal-weight basket (rebalanced every ``rebalance_every`` bars), the same basket
    scaled to ``vol_target``, BTC (``hold_symbol``) buy-and-hold, and a momentum-rank book
    (long the ``momentum_top_k`` coins with the highest ``momentum_feature``, held until they
    leave the top ``momentum_top_k + momentum_buffer``, re-ranked every ``rebalance_every``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rebalance_every: int = Field(default=48, ge=1, le=100_000)
    vol_target: float = Field(default=0.5, gt=0, le=10)
    hold_symbol: str = "BTC/USD"
    momentum_feature: str = "logret_48"
    momentum_top_k: int = Field(default=2, ge=1, le=1000)
    momentum_buffer: int = Field(default=1, ge=0, le=1000)
    #: no order for a weight change below this (the basket's drift between rebalances)
    min_change: float = Field(default=0.02, ge=0, le=1)


class PortfolioParams(BaseModel):
    """``portfolio:`` in ``params.yaml``: the many-coins book (docs/portfolio.md). The path is
    opt-in: ``candlecast portfolio`` runs its stages in ``workspace`` with
    ``profiles/portfolio.yaml`` merged over ``params.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: str = "portfolio"
    registered_model: str = "candlecast-portfolio"
    #: whose out-of-sample forecasts the book trades (the zoo ensemble of the relative target)
    model: str = "ensemble"
    default: PortfolioConfig = PortfolioConfig()
    search: PortfolioSearchSpace = PortfolioSearchSpace()
    #: the walk-forward search (Optuna inside each fold, on the folds before it): trials per
    #: fold, objective of the book, the fewest positions opened per coin and 1,000 bars for a
    #: candidate to be eligible, flat when even the best one lost money
    tuning: PolicyTuning = PolicyTuning(n_trials=30, min_trades_per_1000_bars=0.1)
    baselines: PortfolioBaselines = PortfolioBaselines()
    #: configurations of earlier design iterations looked at on these windows (counted in
    #: the deflated Sharpe's number of trials; docs/portfolio.md keeps the log)
    prior_trials: int = Field(default=0, ge=0)
