"""Champion/challenger: which rows both may be scored on, and whether the challenger wins.

Pure: timestamps and per-period returns in, a window or a decision out. ``retrain`` gathers
the values (MLflow tags, backtests) and records the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from candlecast.ops.bootstrap import BootstrapResult, paired_bootstrap
from candlecast.ops.config import PromotionConfig


def holdout_cut(times: Sequence[pd.Timestamp] | pd.Series, eval_bars: int) -> pd.Timestamp:
    """The first of the latest ``eval_bars`` distinct decision times: the challenger trains on
    rows strictly before it, the comparison looks at rows from it on."""
    axis = pd.Series(pd.to_datetime(pd.Series(times), utc=True).unique()).sort_values()
    if len(axis) <= eval_bars:
        raise ValueError(
            f"ops.promotion.eval_bars ({eval_bars}) must be below the {len(axis)} distinct "
            "timestamps of the training set: the challenger needs rows to train on"
        )
    return pd.Timestamp(axis.iloc[len(axis) - eval_bars])


def first_unseen_time(trained_until: Sequence[pd.Timestamp], horizon: int,
                      bar: pd.Timedelta) -> pd.Timestamp:
    """Decision times strictly after this were trained on by neither model.

    ``trained_until`` are the models' last training decision times (the ``oof_end`` tag);
    their labels end ``horizon`` bars later, so a row is unseen only if its decision time is
    after the latest label end: ``t > max(trained_until) + horizon * bar``.
    """
    if not trained_until:
        raise ValueError("first_unseen_time needs at least one training end")
    return max(pd.Timestamp(t) for t in trained_until) + horizon * bar


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    periods: int
    challenger_return: float | None = None
    champion_return: float | None = None
    bootstrap: BootstrapResult | None = None

    @property
    def outcome(self) -> str:
        return "promoted" if self.promote else "rejected"

    def as_tags(self) -> dict[str, str]:
        tags = {
            "ops.decision": self.outcome,
            "ops.reason": self.reason,
            "ops.challenger_version": self.challenger_version,
            "ops.champion_version": self.champion_version or "",
            "ops.periods": str(self.periods),
        }
        if self.challenger_return is not None:
            tags["ops.challenger_net_return"] = f"{self.challenger_return:.8f}"
        if self.champion_return is not None:
            tags["ops.champion_net_return"] = f"{self.champion_return:.8f}"
        if self.bootstrap is not None:
            tags.update({f"ops.bootstrap.{k}": str(v) for k, v in self.bootstrap.as_dict().items()})
        return tags

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "bootstrap"}
        out["outcome"] = self.outcome
        out["bootstrap"] = self.bootstrap.as_dict() if self.bootstrap else None
        return out


def decide_promotion(challenger: np.ndarray, champion: np.ndarray | None, *,
                     challenger_version: str, champion_version: str | None,
                     config: PromotionConfig) -> PromotionDecision:
    """Promote the challenger if there is no champion, or if its per-period net returns (model
    + policy, the book) beat the champion's on the same periods by ``config.criterion`` (net
    Sharpe by default): the observed difference > 0 AND the paired block bootstrap's
    one-sided p-value < ``alpha``, on at least ``min_periods`` periods."""
    ch = np.asarray(challenger, dtype=float)
    if champion is None or champion_version is None:
        return PromotionDecision(True, "no champion yet", challenger_version, None, len(ch),
                                 float(np.sum(ch)) if len(ch) else None)
    cp = np.asarray(champion, dtype=float)
    n = len(ch)
    if n < config.min_periods:
        return PromotionDecision(
            False, f"only {n} periods neither model was trained on "
            f"(< ops.promotion.min_periods = {config.min_periods}); the champion stays",
            challenger_version, champion_version, n,
        )
    result = paired_bootstrap(ch, cp, n_resamples=config.n_resamples,
                              block_size=config.block_size, seed=config.seed,
                              kind=config.criterion)
    sums = float(np.sum(ch)), float(np.sum(cp))
    facts = (f"net return {sums[0]:+.5f} vs {sums[1]:+.5f} over {n} periods, "
             f"{config.criterion} difference {result.mean_diff:+.3e} per period, bootstrap "
             f"p = {result.p_value:.3f}")
    if result.mean_diff > 0 and result.p_value < config.alpha:
        reason = f"beats champion v{champion_version}: {facts} < alpha {config.alpha}"
        return PromotionDecision(True, reason, challenger_version, champion_version, n,
                                 sums[0], sums[1], result)
    why = "not better" if result.mean_diff <= 0 else "not significantly better"
    reason = f"{why} than champion v{champion_version}: {facts} (alpha {config.alpha})"
    return PromotionDecision(False, reason, challenger_version, champion_version, n,
                             sums[0], sums[1], result)
