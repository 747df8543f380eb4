"""Out-of-sample metrics of direction probabilities, and tidy per-fold/model/regime tables.

Everything here is pure: arrays in, numbers or DataFrames out. The metric names in
:data:`METRIC_NAMES` are the ones logged to MLflow and written to DVC metrics, so every model is
compared under the same names.

Conventions: ``y`` is 1 when the labelled next return was up, ``p`` is P(up); a probability
``p > 0.5`` predicts up (``0.5`` exactly predicts down). The sign-signal PnL is a ranking aid, not
a backtest: it charges ``cost_bps`` per unit of position change and ignores sizing, slippage and
overlapping multi-bar returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

#: Every metric :func:`direction_metrics` returns, in report order.
METRIC_NAMES: tuple[str, ...] = (
    "n",
    "base_rate",
    "mean_prob",
    "log_loss",
    "brier",
    "accuracy",
    "balanced_accuracy",
    "auc",
    "ic",
    "ece",
    "top_decile_accuracy",
    "pnl_gross",
    "pnl_net",
    "turnover",
    "exposure",
)

#: Columns of a long prediction frame: one row per model, fold and sample.
PREDICTION_COLUMNS: tuple[str, ...] = ("model", "fold", "y", "prob_up")
OPTIONAL_PREDICTION_COLUMNS: tuple[str, ...] = ("timestamp", "series", "ret", "regime", "family")


class MetricsConfig(BaseModel):
    """How the probability-independent parts of the metrics are computed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: no position while |p - 0.5| <= band.
    band: float = Field(default=0.0, ge=0.0, lt=0.5)
    #: cost per unit of position change, in basis points of notional.
    cost_bps: float = Field(default=10.0, ge=0.0)
    #: share of most confident predictions for ``top_decile_accuracy``.
    top_fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    calibration_bins: int = Field(default=10, ge=2, le=100)
    #: probabilities are clipped to [eps, 1 - eps] in the log loss.
    eps: float = Field(default=1e-15, gt=0.0, lt=1e-2)


def _arrays(y: object, p: object) -> tuple[np.ndarray, np.ndarray]:
    ya, pa = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if ya.shape != pa.shape or ya.ndim != 1:
        raise ValueError(f"labels {ya.shape} and probabilities {pa.shape} must be 1-d, same length")
    if np.isnan(pa).any():
        raise ValueError(f"probabilities contain {int(np.isnan(pa).sum())} NaN values")
    if ((pa < 0) | (pa > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    if not np.isin(ya, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return ya, pa


def log_loss(y: object, p: object, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of binary labels, probabilities clipped to [eps, 1-eps]."""
    ya, pa = _arrays(y, p)
    if len(ya) == 0:
        return float("nan")
    pa = np.clip(pa, eps, 1 - eps)
    return float(-np.mean(ya * np.log(pa) + (1 - ya) * np.log(1 - pa)))


def brier_score(y: object, p: object) -> float:
    """Mean squared difference between probability and outcome."""
    ya, pa = _arrays(y, p)
    return float(np.mean((pa - ya) ** 2)) if len(ya) else float("nan")


def accuracy(y: object, p: object) -> float:
    ya, pa = _arrays(y, p)
    return float(np.mean((pa > 0.5) == (ya == 1))) if len(ya) else float("nan")


def balanced_accuracy(y: object, p: object) -> float:
    """Mean recall over the classes present (as scikit-learn computes it)."""
    ya, pa = _arrays(y, p)
    pred = pa > 0.5
    recalls = [np.mean(pred[ya == c] == bool(c)) for c in (0.0, 1.0) if (ya == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def _ranks(values: np.ndarray) -> np.ndarray:
    return pd.Series(values).rank(method="average").to_numpy()


def roc_auc(y: object, p: object) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties count half); NaN with one class."""
    ya, pa = _arrays(y, p)
    n_pos, n_neg = int(ya.sum()), int(len(ya) - ya.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _ranks(pa)
    return float((ranks[ya == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def information_coefficient(score: object, realized: object) -> float:
    """Spearman rank correlation of a score (P(up) or a predicted return) with the realized
    return; NaN when either side is constant or there are fewer than 3 pairs."""
    s, r = np.asarray(score, dtype=float), np.asarray(realized, dtype=float)
    if s.shape != r.shape:
        raise ValueError(f"score {s.shape} and realized return {r.shape} must have the same shape")
    keep = ~(np.isnan(s) | np.isnan(r))
    s, r = s[keep], r[keep]
    if len(s) < 3 or np.ptp(s) == 0 or np.ptp(r) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(s), _ranks(r))[0, 1])


def calibration_curve(
    y: object, p: object, n_bins: int = 10, strategy: str = "uniform"
) -> pd.DataFrame:
    """Reliability table: per probability bin, the mean prediction, observed up-rate and count.

    ``strategy='uniform'`` cuts [0, 1] into equal-width bins (all bins listed, empty ones with
    count 0); ``'quantile'`` uses quantiles of ``p`` (duplicate edges merged).
    """
    ya, pa = _arrays(y, p)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        inner = np.quantile(pa, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(pa) else []
        edges = np.unique(np.concatenate([[0.0], inner, [1.0]]))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    bins = np.clip(np.searchsorted(edges, pa, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        mask = bins == b
        count = int(mask.sum())
        rows.append(
            {
                "bin": b,
                "p_low": float(edges[b]),
                "p_high": float(edges[b + 1]),
                "mean_prob": float(pa[mask].mean()) if count else float("nan"),
                "frac_up": float(ya[mask].mean()) if count else float("nan"),
                "count": count,
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(y: object, p: object, n_bins: int = 10) -> float:
    """Count-weighted mean |mean prediction - observed up-rate| over uniform bins."""
    curve = calibration_curve(y, p, n_bins)
    used = curve[curve["count"] > 0]
    if used.empty:
        return float("nan")
    gap = (used["mean_prob"] - used["frac_up"]).abs()
    return float((gap * used["count"]).sum() / used["count"].sum())


def top_confidence_accuracy(y: object, p: object, fraction: float = 0.1) -> float:
    """Accuracy on the ``ceil(fraction * n)`` predictions with the largest |p - 0.5|.

    Ties in confidence are broken by row order (earliest first), so the number is deterministic.
    """
    ya, pa = _arrays(y, p)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if len(ya) == 0:
        return float("nan")
    k = max(1, int(np.ceil(fraction * len(ya))))
    order = np.argsort(-np.abs(pa - 0.5), kind="stable")[:k]
    return float(np.mean((pa[order] > 0.5) == (ya[order] == 1)))


def sign_positions(p: object, band: float = 0.0) -> np.ndarray:
    """+1 where p > 0.5 + band, -1 where p < 0.5 - band, else 0."""
    pa = np.asarray(p, dtype=float)
    return np.where(pa > 0.5 + band, 1.0, np.where(pa < 0.5 - band, -1.0, 0.0))


@dataclass(frozen=True)
class SignPnl:
    """Per-row contributions of the sign-signal PnL, in return units."""

    position: np.ndarray
    #: |position - previous position| per row.
    turnover: np.ndarray
    gross: np.ndarray
    cost: np.ndarray

    @property
    def net(self) -> np.ndarray:
        return self.gross - self.cost

    def subset(self, mask: np.ndarray) -> SignPnl:
        return SignPnl(self.position[mask], self.turnover[mask], self.gross[mask], self.cost[mask])


def sign_pnl(
    p: object,
    ret: object,
    *,
    band: float = 0.0,
    cost_bps: float = 0.0,
    groups: object | None = None,
) -> SignPnl:
    """PnL of holding ``sign_positions(p, band)`` over each row's realized return ``ret``.

    Rows are taken in the given order; with ``groups`` (e.g. the series id) each group is its own
    sequence starting flat. A row's cost is ``cost_bps / 1e4 * |position - previous position|``,
    so entering costs 1 unit and flipping long to short costs 2. Missing returns earn nothing.
    """
    pa = np.asarray(p, dtype=float)
    ra = np.asarray(ret, dtype=float)
    if pa.shape != ra.shape:
        raise ValueError(f"probabilities {pa.shape} and returns {ra.shape} differ in shape")
    position = sign_positions(pa, band)
    keys = np.zeros(len(pa)) if groups is None else pd.factorize(np.asarray(groups))[0]
    previous = np.zeros(len(pa))
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        previous[idx[1:]] = position[idx[:-1]]
    turnover = np.abs(position - previous)
    gross = position * np.nan_to_num(ra, nan=0.0)
    return SignPnl(position, turnover, gross, cost_bps / 1e4 * turnover)


def direction_metrics(
    y: object,
    p: object,
    ret: object | None = None,
    *,
    config: MetricsConfig | None = None,
    pnl: SignPnl | None = None,
) -> dict[str, float]:
    """All of :data:`METRIC_NAMES` for one set of predictions.

    ``ret`` (realized next return) enables ``ic`` and the PnL metrics (NaN without it). Pass a
    precomputed ``pnl`` to aggregate contributions computed over a longer sequence.
    """
    config = config or MetricsConfig()
    ya, pa = _arrays(y, p)
    out: dict[str, float] = {
        "n": float(len(ya)),
        "base_rate": float(ya.mean()) if len(ya) else float("nan"),
        "mean_prob": float(pa.mean()) if len(pa) else float("nan"),
        "log_loss": log_loss(ya, pa, config.eps),
        "brier": brier_score(ya, pa),
        "accuracy": accuracy(ya, pa),
        "balanced_accuracy": balanced_accuracy(ya, pa),
        "auc": roc_auc(ya, pa),
        "ic": float("nan"),
        "ece": expected_calibration_error(ya, pa, config.calibration_bins),
        "top_decile_accuracy": top_confidence_accuracy(ya, pa, config.top_fraction)
        if len(ya)
        else float("nan"),
    }
    if ret is not None:
        out["ic"] = information_coefficient(pa, ret)
        if pnl is None:
            pnl = sign_pnl(pa, ret, band=config.band, cost_bps=config.cost_bps)
    if pnl is not None:
        if len(pnl.position) != len(ya):
            raise ValueError(f"pnl has {len(pnl.position)} rows but there are {len(ya)} labels")
        out.update(
            pnl_gross=float(pnl.gross.sum()),
            pnl_net=float(pnl.net.sum()),
            turnover=float(pnl.turnover.sum()),
            exposure=float(np.abs(pnl.position).mean()) if len(ya) else float("nan"),
        )
    else:
        out.update(pnl_gross=np.nan, pnl_net=np.nan, turnover=np.nan, exposure=np.nan)
    return {name: out[name] for name in METRIC_NAMES}


def check_prediction_frame(predictions: pd.DataFrame) -> None:
    """Raise a ``ValueError`` naming missing columns or bad values of a long prediction frame."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(
            f"prediction frame is missing columns {missing}; expected {list(PREDICTION_COLUMNS)} "
            f"plus optionally {list(OPTIONAL_PREDICTION_COLUMNS)}"
        )
    _arrays(predictions["y"], predictions["prob_up"])


def _row_pnl(frame: pd.DataFrame, config: MetricsConfig) -> SignPnl | None:
    """Sign-signal PnL per row, each (model, series) sequenced in time order across folds."""
    if "ret" not in frame.columns:
        return None
    stream = [c for c in ("model", "series") if c in frame.columns]
    if "timestamp" in frame.columns:
        dupes = frame.duplicated([*stream, "timestamp"])
        if dupes.any():
            row = frame.loc[dupes].iloc[0]
            raise ValueError(
                "prediction frame has two rows for the same "
                f"{[*stream, 'timestamp']} = {[row[c] for c in [*stream, 'timestamp']]}"
            )
        order = np.lexsort(
            [frame["timestamp"].rank(method="dense").to_numpy()]
            + [pd.factorize(frame[c])[0] for c in reversed(stream)]
        )
    else:
        order = np.arange(len(frame))
    groups = frame[stream].astype(str).agg("|".join, axis=1) if stream else None
    ordered = sign_pnl(
        frame["prob_up"].to_numpy()[order],
        frame["ret"].to_numpy()[order],
        band=config.band,
        cost_bps=config.cost_bps,
        groups=None if groups is None else groups.to_numpy()[order],
    )
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return ordered.subset(back)


def metrics_table(
    predictions: pd.DataFrame,
    by: Sequence[str] = ("model", "fold"),
    *,
    config: MetricsConfig | None = None,
    failures: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Tidy metrics: one row per group of ``by`` with a ``status`` column and every metric.

    ``by=("model", "fold")`` gives per-fold numbers, ``("model",)`` pooled out-of-sample numbers,
    ``("model", "regime")`` per-regime numbers. PnL contributions are computed once per model and
    series in time order (so costs at regime or fold boundaries are charged where they occur) and
    summed per group. ``failures`` (columns ``model, fold, error``) adds ``status='failed'`` rows
    with NaN metrics, so a model that failed in a fold stays visible in the comparison.
    """
    config = config or MetricsConfig()
    check_prediction_frame(predictions)
    by = list(by)
    missing = [c for c in by if c not in predictions.columns]
    if missing:
        raise ValueError(f"cannot group by {missing}: not columns of the prediction frame")
    frame = predictions.reset_index(drop=True)
    pnl = _row_pnl(frame, config)
    rows = []
    for keys, group in frame.groupby(by, sort=True, dropna=False):
        idx = group.index.to_numpy()
        metrics = direction_metrics(
            group["y"],
            group["prob_up"],
            group["ret"] if "ret" in group.columns else None,
            config=config,
            pnl=None if pnl is None else pnl.subset(idx),
        )
        rows.append({**dict(zip(by, keys, strict=True)), "status": "ok", "error": "", **metrics})
    if failures is not None and len(failures):
        need = [c for c in by if c not in failures.columns]
        if need:
            raise ValueError(f"failures frame lacks the grouping columns {need}")
        for _, failure in failures.iterrows():
            rows.append(
                {
                    **{c: failure[c] for c in by},
                    "status": "failed",
                    "error": str(failure.get("error", "")),
                    **dict.fromkeys(METRIC_NAMES, float("nan")),
                }
            )
    table = pd.DataFrame(rows, columns=[*by, "status", "error", *METRIC_NAMES])
    return table.sort_values(by, kind="stable").reset_index(drop=True)


def fold_summary(per_fold: pd.DataFrame, by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Mean and standard deviation of every metric across a model's successful folds.

    Columns ``<metric>_mean`` and ``<metric>_std`` plus ``n_folds`` and ``n_failed_folds``.
    """
    by = list(by)
    rows = []
    for keys, group in per_fold.groupby(by, sort=True):
        ok = group[group["status"] == "ok"]
        row: dict[str, object] = dict(zip(by, keys, strict=True))
        row["n_folds"] = len(ok)
        row["n_failed_folds"] = int((group["status"] == "failed").sum())
        for name in METRIC_NAMES:
            row[f"{name}_mean"] = float(ok[name].mean()) if len(ok) else float("nan")
            row[f"{name}_std"] = float(ok[name].std(ddof=1)) if len(ok) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_long(table: pd.DataFrame, id_columns: Sequence[str]) -> pd.DataFrame:
    """Melt a metrics table into ``(*id_columns, metric, value)`` rows (for logging/plots)."""
    values = [c for c in table.columns if c in METRIC_NAMES]
    return table.melt(id_vars=list(id_columns), value_vars=values, var_name="metric")


def calibration_table(
    predictions: pd.DataFrame, by: Sequence[str] = ("model",), n_bins: int = 10
) -> pd.DataFrame:
    """Reliability curves of every group, stacked, with the ``by`` columns in front."""
    check_prediction_frame(predictions)
    by = list(by)
    parts = []
    for keys, group in predictions.groupby(by, sort=True):
        curve = calibration_curve(group["y"], group["prob_up"], n_bins)
        for col, key in zip(by, keys, strict=True):
            curve.insert(by.index(col), col, key)
        parts.append(curve)
    if not parts:
        columns = ["bin", "p_low", "p_high", "mean_prob", "frac_up", "count"]
        return pd.DataFrame(columns=[*by, *columns])
    return pd.concat(parts, ignore_index=True)
