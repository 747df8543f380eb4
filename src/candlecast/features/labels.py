"""Training labels: forward log returns and up/down direction, future by definition.

For a candle ``t`` and horizon ``h`` (bars):

* ``fwd_logret_{h} = log(close[t+h] / close[t])`` -- the return of holding from the close of
  ``t`` (when its features are known) to the close of ``t+h``;
* ``label_up_{h}`` = 1.0 if that return is ``> dead_zone``, 0.0 if ``< -dead_zone``, NaN if
  ``|r| <= dead_zone`` (too small to call; with the default ``dead_zone = 0`` only an exactly
  unchanged close is NaN).

Both are NaN when ``t+h`` is past the end of the data or any step between ``t`` and ``t+h`` is a
gap (a timestamp step other than the timeframe): a label is never bridged across missing bars.
Labels must only ever be used as targets, never as features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from candlecast.data.schema import SERIES_COLUMNS
from candlecast.features.config import ID_COLUMNS
from candlecast.features.series import REQUIRED_COLUMNS, series_arrays


class LabelConfig(BaseModel):
    """Label horizons (bars ahead) and the direction dead zone (in log-return units)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizons: tuple[int, ...] = (1, 4, 16, 48)
    dead_zone: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("horizons")
    @classmethod
    def _check(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("labels.horizons must hold at least one horizon")
        if any(h < 1 or h > 10_000 for h in v) or len(set(v)) != len(v):
            raise ValueError(f"labels.horizons must be distinct integers in [1, 10000], got {v}")
        return v


def label_names(config: LabelConfig | None = None) -> list[str]:
    """The label columns :func:`make_labels` adds, in order."""
    cfg = config or LabelConfig()
    return [name for h in cfg.horizons for name in (f"fwd_logret_{h}", f"label_up_{h}")]


def label_arrays(close: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 config: LabelConfig) -> dict[str, np.ndarray]:
    """Label columns from closes and the contiguous runs ``[starts[k], ends[k])``."""
    n = len(close)
    run_end = np.repeat(ends, ends - starts)
    idx = np.arange(n)
    out: dict[str, np.ndarray] = {}
    for h in config.horizons:
        r = np.full(n, np.nan)
        ok = idx + h < run_end  # t+h exists and lies in the same contiguous run
        r[ok] = np.log(close[idx[ok] + h] / close[ok])  # log of the ratio: exact to ~1 ulp
        up = np.full(n, np.nan)
        up[r > config.dead_zone] = 1.0
        up[r < -config.dead_zone] = 0.0
        out[f"fwd_logret_{h}"] = r
        out[f"label_up_{h}"] = up
    return out


def make_labels(candles: pd.DataFrame, config: LabelConfig | None = None) -> pd.DataFrame:
    """Labels for ONE canonical candle series sorted by timestamp.

    Returns the id columns plus :func:`label_names` (float64), rows aligned with the input.
    Raises ``ValueError`` like :func:`~candlecast.features.compute_features` on bad input.
    """
    cfg = config or LabelConfig()
    ids = candles.loc[:, list(ID_COLUMNS)].copy() if len(candles) else None
    if ids is None:
        missing = [c for c in REQUIRED_COLUMNS if c not in candles.columns]
        if missing:
            raise ValueError(f"candle table is missing columns {missing}")
        empty = candles.loc[:, list(ID_COLUMNS)].copy()
        for name in label_names(cfg):
            empty[name] = pd.Series(dtype=np.float64, index=empty.index)
        return empty
    s = series_arrays(candles)
    columns = label_arrays(s.close, s.starts, s.ends, cfg)
    values = pd.DataFrame(columns, index=candles.index, columns=label_names(cfg))
    return pd.concat([ids, values], axis=1)


def make_labels_multi(candles: pd.DataFrame, config: LabelConfig | None = None) -> pd.DataFrame:
    """:func:`make_labels` per exchange/symbol/timeframe; rows aligned with the input."""
    cfg = config or LabelConfig()
    if len(candles) == 0:
        return make_labels(candles, cfg)
    if not candles.index.is_unique:
        raise ValueError("candles index must be unique to align labels to rows")
    parts = [
        make_labels(group, cfg)
        for _, group in candles.groupby(list(SERIES_COLUMNS), sort=True, dropna=False)
    ]
    return pd.concat(parts).loc[candles.index]
