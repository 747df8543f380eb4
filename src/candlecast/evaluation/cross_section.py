"""How a ranking of coins is judged out of sample, per bar across coins (pure): what Qlib
reports for cross-sectional models.

For a score (a model's forecast, or a baseline's) and the realized target (the coin's forward
return relative to the basket), at every bar with at least ``min_coins`` coins that have both:

* **rank IC**: Spearman correlation across the coins (Pearson of average ranks);
* **ICIR**: mean / std of the per-bar rank IC (not annualized), with its t-statistic
  ``mean / std x sqrt(bars)`` (overlapping horizons make neighbouring bars dependent: read it
  as an upper bound) and the share of bars with a positive IC;
* **top-minus-bottom spread**: the mean target of the ``top`` best-scored coins minus that of
  the ``top`` worst, averaged over bars (log return over the target's horizon);
* **ranking turnover**: the share of the top set that changes from one bar to the next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from candlecast.features.cross_section import average_rank

METRICS: tuple[str, ...] = ("rank_ic", "icir", "ic_t_stat", "ic_hit_rate", "top_bottom_spread",
                            "turnover", "bars")


def panel(frame: pd.DataFrame, column: str, time: str, series: str,
          coins: Sequence[str]) -> np.ndarray:
    """``column`` as a (bars, coins) array on the frame's sorted unique times (every time of
    the frame, even one where ``column`` is NaN for every coin: score and target line up)."""
    times = np.sort(frame[time].unique())
    wide = frame.drop_duplicates([time, series]).pivot(index=time, columns=series,
                                                       values=column)
    return wide.reindex(index=times, columns=list(coins)).to_numpy(dtype=float)


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(ok, a, 0.0).sum(axis=1) / n
        mb = np.where(ok, b, 0.0).sum(axis=1) / n
        da, db = np.where(ok, a - ma[:, None], 0.0), np.where(ok, b - mb[:, None], 0.0)
        return (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))


def per_bar(score: np.ndarray, target: np.ndarray, top: int = 1, min_coins: int = 3
            ) -> pd.DataFrame:
    """Per bar (row of the (bars, coins) arrays): ``rank_ic``, ``spread``, ``turnover`` (NaN
    where fewer than ``min_coins`` coins have both values)."""
    ok = np.isfinite(score) & np.isfinite(target)
    s, y = np.where(ok, score, np.nan), np.where(ok, target, np.nan)
    enough = ok.sum(axis=1) >= max(min_coins, 2 * top)
    ic = np.where(enough, _row_corr(average_rank(s), average_rank(y)), np.nan)
    spread = np.full(len(s), np.nan)
    turnover = np.full(len(s), np.nan)
    previous: set[int] | None = None
    for t in np.flatnonzero(enough):
        cols = np.flatnonzero(ok[t])
        order = cols[np.lexsort((cols, -s[t, cols]))]  # best first, ties by coin order
        best, worst = order[:top], order[::-1][:top]
        spread[t] = float(y[t, best].mean() - y[t, worst].mean())
        chosen = {int(c) for c in best}
        if previous is not None:
            turnover[t] = len(chosen - previous) / top
        previous = chosen
    return pd.DataFrame({"rank_ic": ic, "spread": spread, "turnover": turnover})


def summarize(bars: pd.DataFrame) -> dict[str, float]:
    """The :data:`METRICS` of a per-bar table (NaN where undefined, never a made-up 0)."""
    ic = bars["rank_ic"].dropna().to_numpy()
    n = len(ic)
    mean = float(ic.mean()) if n else math.nan
    std = float(ic.std(ddof=1)) if n > 1 else math.nan
    icir = mean / std if n > 1 and std > 0 else math.nan
    return {"rank_ic": mean, "icir": icir,
            "ic_t_stat": icir * math.sqrt(n) if icir == icir else math.nan,
            "ic_hit_rate": float((ic > 0).mean()) if n else math.nan,
            "top_bottom_spread": float(bars["spread"].mean()) if n else math.nan,
            "turnover": float(bars["turnover"].mean()) if bars["turnover"].notna().any()
            else math.nan,
            "bars": float(n)}


def ranking_metrics(frame: pd.DataFrame, score: str, target: str, coins: Sequence[str], *,
                    time: str = "timestamp", series: str = "series", fold: str | None = "fold",
                    top: int = 1, min_coins: int = 3) -> dict[str, Any]:
    """:func:`summarize` of ``score`` against ``target`` pooled over every bar of ``frame``
    and per fold (``fold`` column): ``{"pooled": {...}, "folds": {fold: {...}}}``."""
    def one(part: pd.DataFrame) -> dict[str, float]:
        return summarize(per_bar(panel(part, score, time, series, coins),
                                 panel(part, target, time, series, coins), top, min_coins))

    out: dict[str, Any] = {"pooled": one(frame), "folds": {}}
    if fold is not None and fold in frame.columns:
        for key, part in frame.groupby(fold, sort=True):
            out["folds"][int(key)] = one(part)
    return out
