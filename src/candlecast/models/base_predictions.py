"""What the deployable ensemble and the walk-forward driver read from the base models and the
feature rows: one model's P(up) (and Chronos' spread) on a frame, Chronos on chosen rows only,
the regime inputs from feature rows. Pure functions (no state), shared so both paths compute
exactly the same numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def regime_inputs(frame: pd.DataFrame, vol_window: int, trend_window: int) -> pd.DataFrame:
    """Regime features from feature rows: ``log_vol = log(rv_w)``, ``trend = logret_t /
    (rv_w * sqrt(t))`` (``models.regime.regime_features`` with the realized-vol feature)."""
    rv = frame[f"rv_{vol_window}"].astype(float)
    positive = rv.where(rv > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_vol = np.log(positive)
        trend = frame[f"logret_{trend_window}"].astype(float) / (positive * np.sqrt(trend_window))
    return pd.DataFrame({"log_vol": log_vol, "trend": trend}, index=frame.index)


def chronos_rows(model: Any, X: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(up) and forecast spread of a Chronos-2 direction model for ``rows`` of ``X`` only.

    ``predict_forecast`` forecasts every row of its input; serving needs one row per series,
    so this builds the same contexts (``contexts``, public) and forecasts them the same way
    (``forecast_contexts``), reading the same quantiles (``prob_up_from_quantiles``,
    ``interpolate_quantiles``) for the wanted rows. The pipeline test checks it equals
    ``predict_forecast`` on those rows.
    """
    from candlecast.models.quantiles import interpolate_quantiles, prob_up_from_quantiles

    cfg = model.config
    contexts = model.contexts(X)[rows]
    usable = (~np.isnan(contexts)).sum(axis=1) >= cfg.min_past
    p_up = np.full(len(rows), 0.5)
    spread = np.full(len(rows), np.nan)
    if usable.any():
        levels, values = model.forecast_contexts(contexts[usable])
        p_up[usable] = prob_up_from_quantiles(levels, values)
        lo_hi = interpolate_quantiles(levels, values, cfg.spread_levels)
        spread[usable] = lo_hi[:, 1] - lo_hi[:, 0]
    return p_up, spread


def base_prediction(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """P(up) and extra outputs (Chronos: ``spread``) of one model on ``X`` (row-aligned)."""
    if callable(getattr(model, "predict_forecast", None)):
        forecast = model.predict_forecast(X)
        extras = {}
        if "spread" in forecast:
            extras["spread"] = forecast["spread"].to_numpy(dtype=float)
        return forecast["p_up"].to_numpy(dtype=float), extras
    return np.asarray(model.predict_proba_up(X), dtype=float), {}


def _ffill(values: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN value forward (leading NaN stay NaN)."""
    index = np.where(np.isnan(values), 0, np.arange(len(values)))
    np.maximum.accumulate(index, out=index)
    return values[index]
