"""The champion rule of the registered ensemble: ``champion`` moves only when the model WITH
its policy earns more, net of costs, out of sample; log loss is a guard, not the criterion.

A new version becomes ``champion`` only when its out-of-sample net Sharpe (or Calmar, as
``ensemble.criterion`` says) on the decision window is strictly above the current champion's
on the SAME bars, and its log loss passes the guards:

* never worse than uninformative: log loss at most ``max_log_loss`` (a coin flip is ln 2);
* not clearly worse calibrated than the champion: at most ``log_loss_tolerance`` above it.

Which bars (the ``basis``):

* ``same-window``: same data and folds as the champion's run: both numbers are walk-forward
  out-of-sample scores of the same decision window, compared as stored;
* ``after-champion-training``: newer data: both are scored on the decision-window bars after
  everything the champion was trained on (the champion traded with its bundled policy);
* ``not-comparable`` (too few such bars, or the champion needs inputs the new run lacks): the
  champion stays and the reason says why.

Pure: numbers in, a decision out. The ``register`` stage gathers the numbers and sets aliases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Basis = Literal["first", "same-window", "after-champion-training", "not-comparable", "deferred"]
Criterion = Literal["sharpe", "calmar"]
_SAME = 1e-9


@dataclass(frozen=True)
class ModelScore:
    """A model + policy on a decision window: net of costs, out of sample."""

    net_sharpe: float
    net_calmar: float
    log_loss: float
    bars: int

    def value(self, criterion: Criterion) -> float:
        return self.net_sharpe if criterion == "sharpe" else self.net_calmar

    def as_tags(self, prefix: str) -> dict[str, str]:
        return {f"{prefix}.net_sharpe": f"{self.net_sharpe:.12g}",
                f"{prefix}.net_calmar": f"{self.net_calmar:.12g}",
                f"{prefix}.log_loss": f"{self.log_loss:.12g}",
                f"{prefix}.bars": str(self.bars)}

    @classmethod
    def from_tags(cls, tags: dict[str, str], prefix: str) -> ModelScore | None:
        try:
            return cls(float(tags[f"{prefix}.net_sharpe"]), float(tags[f"{prefix}.net_calmar"]),
                       float(tags[f"{prefix}.log_loss"]), int(tags[f"{prefix}.bars"]))
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class ChampionDecision:
    alias: Literal["champion", "challenger"]
    reason: str
    basis: Basis
    criterion: Criterion
    new: ModelScore
    champion: ModelScore | None
    champion_version: str | None = None

    def as_tags(self) -> dict[str, str]:
        """The decision as MLflow tags (``decision.*``)."""
        tags = {"decision.alias": self.alias, "decision.reason": self.reason,
                "decision.basis": self.basis, "decision.criterion": self.criterion,
                "decision.champion_version": self.champion_version or "",
                **self.new.as_tags("decision.new")}
        if self.champion is not None:
            tags.update(self.champion.as_tags("decision.champion"))
        return tags


def decide_champion(
    new: ModelScore,
    champion: ModelScore | None,
    *,
    criterion: Criterion,
    min_bars: int,
    basis: Basis,
    max_log_loss: float,
    log_loss_tolerance: float,
    champion_version: str | None = None,
) -> ChampionDecision:
    """Champion if there is none yet (and the guards pass), or if ``new`` earns a higher net
    ``criterion`` than the champion on at least ``min_bars`` common bars without failing a log
    loss guard; challenger otherwise."""
    def out(alias: Literal["champion", "challenger"], reason: str,
            why: Basis = basis) -> ChampionDecision:
        return ChampionDecision(alias, reason, why, criterion, new, champion, champion_version)

    value = new.value(criterion)
    if not math.isfinite(value):
        return out("challenger", f"the new model has no finite out-of-sample net {criterion}")
    if not new.log_loss <= max_log_loss:
        return out("challenger", f"log loss guard: {new.log_loss:.6f} > {max_log_loss:.6f} "
                   "(no better than a coin flip)")
    if basis == "first":
        return out("champion", f"no champion yet (net {criterion} {value:.3f})")
    if basis == "not-comparable" or champion is None:
        return out("challenger", "the champion cannot be scored on the new decision window; "
                   "it stays", "not-comparable")
    if new.bars < min_bars:
        return out("challenger", f"only {new.bars} comparable bars (< {min_bars}); the champion "
                   "stays")
    if new.log_loss > champion.log_loss + log_loss_tolerance:
        return out("challenger", f"log loss guard: {new.log_loss:.6f} is more than "
                   f"{log_loss_tolerance:g} above the champion's {champion.log_loss:.6f}")
    theirs = champion.value(criterion)
    # a stored score carries 12 significant digits: closer than that is the same number
    if value > theirs + _SAME * max(1.0, abs(theirs)) or not math.isfinite(theirs):
        return out("champion", f"beats champion v{champion_version}: net {criterion} "
                   f"{value:.3f} > {theirs:.3f} on {new.bars} bars ({basis})")
    return out("challenger", f"does not beat champion v{champion_version}: net {criterion} "
               f"{value:.3f} vs {theirs:.3f} on {new.bars} bars ({basis})")


def deferred_decision(new: ModelScore, criterion: Criterion) -> ChampionDecision:
    """``ensemble.promotion: defer``: register as ``challenger``; the ops promotion decides."""
    return ChampionDecision(
        "challenger", "promotion deferred to the ops retrain decision (ensemble.promotion=defer)",
        "deferred", criterion, new, None, None,
    )
