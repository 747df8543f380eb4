"""Batch (whole-history, vectorised) features: the same definitions as the incremental engine.

``compute_features`` takes ONE canonical candle series; ``compute_features_multi`` groups a
table by exchange/symbol/timeframe. Output rows match the input rows one to one (same index);
columns are the id columns, :func:`feature_names` and :data:`AUX_COLUMNS`, all float64, NaN
during warm-up after the start of data and after every gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.data.schema import SERIES_COLUMNS
from candlecast.features.config import (
    AUX_COLUMNS,
    ID_COLUMNS,
    FeatureConfig,
    aux_first_valid_age,
    first_valid_age,
    output_columns,
)
from candlecast.features.kernels import (
    NAN,
    ema_runs,
    lag,
    mask_young,
    rolling_max,
    rolling_mean,
    rolling_mean_std,
    rolling_min,
    rolling_sum,
    safe_ratio,
)
from candlecast.features.kernels import rolling_dot as _rolling_dot
from candlecast.features.series import REQUIRED_COLUMNS, SeriesArrays, series_arrays
from candlecast.features.streaming import _REL_ZERO, obv_slope_weights

_NS_PER_DAY = 86_400 * 10**9
_TWO_PI = 2.0 * np.pi


def _wilder(x: np.ndarray, n: int, offset: int, s: SeriesArrays) -> np.ndarray:
    return ema_runs(x, n, 1.0 / n, offset, s.starts, s.ends)


def _ema(x: np.ndarray, n: int, offset: int, s: SeriesArrays) -> np.ndarray:
    return ema_runs(x, n, 2.0 / (n + 1.0), offset, s.starts, s.ends)


def _true_range(s: SeriesArrays) -> np.ndarray:
    prev = lag(s.close, 1)
    tr = np.maximum(s.high - s.low, np.maximum(np.abs(s.high - prev), np.abs(s.low - prev)))
    first = s.age == 0
    tr[first] = (s.high - s.low)[first]  # no previous close inside the run
    return tr


def _adx(s: SeriesArrays, n: int, tr: np.ndarray) -> dict[str, np.ndarray]:
    atr = _wilder(tr, n, 0, s)
    up = s.high - lag(s.high, 1)
    dn = lag(s.low, 1) - s.low
    pdm = np.where((up > dn) & (up > 0.0), up, 0.0)
    mdm = np.where((dn > up) & (dn > 0.0), dn, 0.0)
    sp = _wilder(pdm, n, 1, s)
    sm = _wilder(mdm, n, 1, s)
    pdi = safe_ratio(100.0 * sp, atr, 0.0)
    mdi = safe_ratio(100.0 * sm, atr, 0.0)
    dx = safe_ratio(100.0 * np.abs(pdi - mdi), pdi + mdi, 0.0)
    return {"adx": _wilder(dx, n, n, s), "plus_di": pdi, "minus_di": mdi}


def _obv_slope(s: SeriesArrays, n: int) -> np.ndarray:
    prev = lag(s.close, 1)
    signed = np.where(s.close > prev, s.volume, np.where(s.close < prev, -s.volume, 0.0))
    signed[s.age == 0] = 0.0
    slope = _rolling_dot(signed, np.asarray(obv_slope_weights(n)))
    vol = rolling_sum(s.volume, n - 1)
    return safe_ratio(slope * (n - 1), vol, 0.0)


def _volatility(s: SeriesArrays, cfg: FeatureConfig, r1: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    hl2 = np.log(s.high / s.low) ** 2
    co2 = np.log(s.close / s.open) ** 2
    gk_term = 0.5 * hl2 - (2.0 * np.log(2.0) - 1.0) * co2
    for w in cfg.vol_windows:
        out[f"rv_{w}"] = np.sqrt(rolling_mean(r1 * r1, w))
    for w in cfg.vol_windows:
        out[f"parkinson_{w}"] = np.sqrt(rolling_mean(hl2, w) / (4.0 * np.log(2.0)))
    for w in cfg.vol_windows:
        out[f"garman_klass_{w}"] = np.sqrt(np.fmax(rolling_mean(gk_term, w), 0.0))
    return out


def _calendar(ts_ns: np.ndarray) -> dict[str, np.ndarray]:
    day_frac = (ts_ns % _NS_PER_DAY) / _NS_PER_DAY
    dow = ((ts_ns // _NS_PER_DAY + 3) % 7) / 7.0  # 1970-01-01 was a Thursday; Monday = 0
    return {
        "hour_sin": np.sin(_TWO_PI * day_frac), "hour_cos": np.cos(_TWO_PI * day_frac),
        "dow_sin": np.sin(_TWO_PI * dow), "dow_cos": np.cos(_TWO_PI * dow),
    }


def feature_arrays(s: SeriesArrays, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Every output column (features then aux) as float64 arrays, warm-up already masked."""
    c = s.close
    lc = np.log(c)
    out: dict[str, np.ndarray] = {}
    for h in cfg.return_horizons:
        out[f"logret_{h}"] = lc - lag(lc, h, NAN) if h < len(c) else np.full(len(c), NAN)
    for w in cfg.ma_windows:
        out[f"sma_dist_{w}"] = c / rolling_mean(c, w) - 1.0
    for w in cfg.ma_windows:
        out[f"ema_dist_{w}"] = c / _ema(c, w, 0, s) - 1.0

    d = c - lag(c, 1)
    d[s.age == 0] = 0.0
    gain = _wilder(np.maximum(d, 0.0), cfg.rsi_window, 1, s)
    loss = _wilder(np.maximum(-d, 0.0), cfg.rsi_window, 1, s)
    out["rsi"] = safe_ratio(100.0 * gain, gain + loss, 50.0)

    line = _ema(c, cfg.macd_fast, 0, s) - _ema(c, cfg.macd_slow, 0, s)
    signal = _ema(line, cfg.macd_signal, cfg.macd_slow - 1, s)
    out["macd"], out["macd_signal"], out["macd_hist"] = line / c, signal / c, (line - signal) / c

    mid, sd = rolling_mean_std(c, cfg.bb_window)
    band = 2.0 * cfg.bb_k * sd
    flat = sd <= _REL_ZERO * mid
    out["bb_pct_b"] = np.where(flat, 0.5, safe_ratio(c - (mid - cfg.bb_k * sd), band, 0.5))
    out["bb_pct_b"][np.isnan(sd)] = NAN
    out["bb_width"] = np.where(flat, 0.0, band / mid)

    tr = _true_range(s)
    atr = _wilder(tr, cfg.atr_window, 0, s)
    out["atr_pct"] = atr / c
    adx = _adx(s, cfg.adx_window, tr)
    out.update(adx)

    hh, ll = rolling_max(s.high, cfg.stoch_window), rolling_min(s.low, cfg.stoch_window)
    k = safe_ratio(100.0 * (c - ll), hh - ll, 50.0)
    k = mask_young(k, s.age, cfg.stoch_window - 1)
    out["stoch_k"] = k
    out["stoch_d"] = rolling_mean(np.nan_to_num(k, nan=0.0), cfg.stoch_smooth)

    r1 = lc - lag(lc, 1)
    r1[s.age == 0] = 0.0
    out.update(_volatility(s, cfg, r1))

    vmean, vstd = rolling_mean_std(s.volume, cfg.volume_z_window)
    vflat = vstd <= _REL_ZERO * vmean
    out["volume_z"] = np.where(vflat, 0.0, safe_ratio(s.volume - vmean, vstd, 0.0))
    out["volume_z"][np.isnan(vstd)] = NAN
    out["obv_slope"] = _obv_slope(s, cfg.obv_slope_window)
    out.update(_calendar(s.ts_ns))

    out["atr"] = atr
    out["bars_since_reset"] = s.age.astype(np.float64)
    out["gap_reset"] = s.gap_reset.astype(np.float64)
    ages = {**first_valid_age(cfg), **aux_first_valid_age(cfg)}
    for name, first in ages.items():
        mask_young(out[name], s.age, first)
    return out


def _empty_output(candles: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    out = candles.loc[:, list(ID_COLUMNS)].copy()
    for name in output_columns(cfg):
        out[name] = pd.Series(dtype=np.float64, index=out.index)
    return out


def compute_features(candles: pd.DataFrame, config: FeatureConfig | None = None) -> pd.DataFrame:
    """Features of one canonical candle series sorted by timestamp (see module docstring).

    Raises ``ValueError`` on more than one series, duplicate or unsorted timestamps, and
    non-finite/non-positive prices or negative volume (naming the first bad row).
    """
    cfg = config or FeatureConfig()
    if len(candles) == 0:
        missing = [col for col in REQUIRED_COLUMNS if col not in candles.columns]
        if missing:
            raise ValueError(f"candle table is missing columns {missing}")
        return _empty_output(candles, cfg)
    arrays = series_arrays(candles)
    columns = feature_arrays(arrays, cfg)
    ids = candles.loc[:, list(ID_COLUMNS)].copy()
    values = pd.DataFrame(columns, index=candles.index, columns=output_columns(cfg))
    return pd.concat([ids, values], axis=1)


def compute_features_multi(
    candles: pd.DataFrame, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """:func:`compute_features` for every exchange/symbol/timeframe in ``candles``.

    Each series must be sorted by timestamp within itself; series may be interleaved. Rows of
    the result line up with the input rows (same index, same order).
    """
    cfg = config or FeatureConfig()
    if len(candles) == 0:
        return compute_features(candles, cfg)
    if not candles.index.is_unique:
        raise ValueError("candles index must be unique to align features to rows")
    parts = [
        compute_features(group, cfg)
        for _, group in candles.groupby(list(SERIES_COLUMNS), sort=True, dropna=False)
    ]
    return pd.concat(parts).loc[candles.index]


__all__ = ["AUX_COLUMNS", "compute_features", "compute_features_multi", "feature_arrays"]
