"""The champion rule of the registered ensemble: move ``champion`` only on a real improvement.

A new ensemble becomes ``champion`` only when its out-of-sample log loss on the latest folds
is strictly below the current champion's on the SAME rows; otherwise it is registered as
``challenger``. Which rows:

* same data and folds as the champion's run (``same-window``): both numbers are walk-forward
  out-of-sample scores of the same decision window, compared as stored;
* newer data (``after-champion-training``): the champion is scored on the decision-window rows
  that come after everything it was trained on, the new ensemble on the same rows;
* otherwise (``not-comparable``: too few such rows, or the champion needs inputs the new run
  lacks) the champion stays and the reason says why.

Pure: numbers in, a decision out. The ensemble stage gathers the numbers and sets the aliases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

Basis = Literal["first", "same-window", "after-champion-training", "not-comparable", "deferred"]


@dataclass(frozen=True)
class ChampionDecision:
    alias: Literal["champion", "challenger"]
    reason: str
    basis: Basis
    new_log_loss: float
    champion_log_loss: float | None
    rows: int
    champion_version: str | None = None

    def as_tags(self) -> dict[str, str]:
        """The decision as MLflow tags (``decision.*``)."""
        return {f"decision.{k}": "" if v is None else str(v) for k, v in asdict(self).items()}


def decide_champion(
    new_log_loss: float,
    champion_log_loss: float | None,
    *,
    rows: int,
    min_rows: int,
    basis: Basis,
    champion_version: str | None = None,
) -> ChampionDecision:
    """Champion if there is none yet, or if ``new`` has a lower log loss than the champion on
    at least ``min_rows`` common rows; challenger otherwise."""
    if not math.isfinite(new_log_loss):
        return ChampionDecision(
            "challenger", "the new ensemble has no finite out-of-sample log loss", basis,
            new_log_loss, champion_log_loss, rows, champion_version,
        )
    if basis == "first":
        return ChampionDecision(
            "champion", "no champion yet", basis, new_log_loss, None, rows, None,
        )
    if basis == "not-comparable" or champion_log_loss is None:
        return ChampionDecision(
            "challenger",
            "the champion cannot be scored on the new decision window; it stays",
            "not-comparable", new_log_loss, champion_log_loss, rows, champion_version,
        )
    if rows < min_rows:
        return ChampionDecision(
            "challenger",
            f"only {rows} comparable rows (< {min_rows}); the champion stays",
            basis, new_log_loss, champion_log_loss, rows, champion_version,
        )
    gain = champion_log_loss - new_log_loss
    if gain > 0:
        reason = (
            f"beats champion v{champion_version}: log loss {new_log_loss:.6f} < "
            f"{champion_log_loss:.6f} on {rows} rows ({basis})"
        )
        return ChampionDecision(
            "champion", reason, basis, new_log_loss, champion_log_loss, rows, champion_version
        )
    reason = (
        f"does not beat champion v{champion_version}: log loss {new_log_loss:.6f} vs "
        f"{champion_log_loss:.6f} on {rows} rows ({basis})"
    )
    return ChampionDecision(
        "challenger", reason, basis, new_log_loss, champion_log_loss, rows, champion_version
    )


def deferred_decision(new_log_loss: str | float, rows: int) -> ChampionDecision:
    """``ensemble.promotion: defer``: register as ``challenger``; the ops promotion decides."""
    return ChampionDecision(
        "challenger", "promotion deferred to the ops retrain decision (ensemble.promotion=defer)",
        "deferred", float(new_log_loss), None, rows, None,
    )
