"""The ``ops`` section of params.yaml (frozen, validated at load like every other section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from candlecast.monitoring.config import AlertConfig, DriftConfig


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PromotionConfig(_Frozen):
    """When a challenger replaces the champion (see ``candlecast.ops.promotion``)."""

    #: bars per series of the most recent window held out of the challenger's training and
    #: used to compare both models (out of sample for both)
    eval_bars: int = Field(default=2000, ge=10)
    #: fewest paired per-bar returns (all series) the comparison may rest on
    min_periods: int = Field(default=500, ge=2)
    #: what is compared, net of costs, model + policy: the Sharpe or Calmar ratio of the
    #: book's per-bar returns (or their mean)
    criterion: Literal["sharpe", "calmar", "mean"] = "sharpe"
    #: one-sided significance level of the paired bootstrap (challenger - champion > 0)
    alpha: float = Field(default=0.1, gt=0, lt=1)
    n_resamples: int = Field(default=2000, ge=100)
    #: bars per block of the moving-block bootstrap (returns are autocorrelated)
    block_size: int = Field(default=48, ge=1)
    seed: int = 42


class ReplayConfig(_Frozen):
    """A replayed "new" period of the bundled sample standing in for live candles."""

    enabled: bool = True
    #: bars per series at the end of the bundled sample held back from the initial ingest
    holdout_bars: int = Field(default=2000, ge=1)
    #: bars per series one ``refresh`` appends
    chunk_bars: int = Field(default=500, ge=1)


class OpsConfig(_Frozen):
    drift: DriftConfig = DriftConfig()
    promotion: PromotionConfig = PromotionConfig()
    replay: ReplayConfig = ReplayConfig()
    alerts: AlertConfig = AlertConfig()
    #: where the ops loop keeps its state (replay cursor, retrain workspace, alias log)
    state_dir: str = "data/ops"
