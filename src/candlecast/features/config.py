"""Feature configuration, the feature names it implies, and when each feature becomes valid.

Every window length lives in the frozen :class:`FeatureConfig`. The names and the warm-up table
(``first_valid_age``) are derived from it here, once, and used by the batch path, the incremental
engine and the tests, so the three cannot drift apart.

"Age" is the number of bars since the series (or the last gap) started: 0 on the first bar of a
contiguous run. A feature with first valid age ``k`` is NaN on bars of age ``< k``.
"""

from __future__ import annotations

import math

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_WINDOW = 2_000

#: Non-feature output columns: the absolute ATR (price units, for the risk engine), bars since the
#: last reset (gap or start of data) and a 1.0 marker on the first bar after a gap.
AUX_COLUMNS: tuple[str, ...] = ("atr", "bars_since_reset", "gap_reset")

#: Identifying columns copied from the candles into every feature and label table.
ID_COLUMNS: tuple[str, ...] = ("timestamp", "exchange", "symbol", "timeframe")

def _check_windows(name: str, values: tuple[int, ...], low: int) -> tuple[int, ...]:
    if not values:
        raise ValueError(f"{name} must hold at least one window")
    bad = [v for v in values if not low <= v <= MAX_WINDOW]
    if bad:
        raise ValueError(f"{name} values must be in [{low}, {MAX_WINDOW}], got {bad}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicate windows: {list(values)}")
    return values


class FeatureConfig(BaseModel):
    """Window lengths (in bars) of every feature. Defaults suit 30m-1h crypto candles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    return_horizons: tuple[int, ...] = (1, 2, 4, 8, 16, 48)
    ma_windows: tuple[int, ...] = (10, 20, 50)
    rsi_window: int = Field(default=14, ge=2, le=MAX_WINDOW)
    macd_fast: int = Field(default=12, ge=2, le=MAX_WINDOW)
    macd_slow: int = Field(default=26, ge=2, le=MAX_WINDOW)
    macd_signal: int = Field(default=9, ge=2, le=MAX_WINDOW)
    bb_window: int = Field(default=20, ge=2, le=MAX_WINDOW)
    bb_k: float = Field(default=2.0, gt=0, le=10)
    atr_window: int = Field(default=14, ge=2, le=MAX_WINDOW)
    adx_window: int = Field(default=14, ge=2, le=MAX_WINDOW)
    stoch_window: int = Field(default=14, ge=2, le=MAX_WINDOW)
    stoch_smooth: int = Field(default=3, ge=1, le=MAX_WINDOW)
    vol_windows: tuple[int, ...] = (12, 48)
    volume_z_window: int = Field(default=48, ge=2, le=MAX_WINDOW)
    obv_slope_window: int = Field(default=12, ge=3, le=MAX_WINDOW)

    @field_validator("return_horizons")
    @classmethod
    def _horizons(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        return _check_windows("return_horizons", v, 1)

    @field_validator("ma_windows", "vol_windows")
    @classmethod
    def _windows(cls, v: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        return _check_windows(str(info.field_name), v, 2)

    @model_validator(mode="after")
    def _macd_order(self) -> FeatureConfig:
        if self.macd_fast >= self.macd_slow:
            raise ValueError(
                f"macd_fast ({self.macd_fast}) must be shorter than macd_slow ({self.macd_slow})"
            )
        return self


def first_valid_age(config: FeatureConfig) -> dict[str, int]:
    """Feature name -> the first age (bars since reset) at which it is defined, in output order.

    This table *is* the warm-up contract: both implementations emit NaN before it and a number
    from it on (given finite, positive prices).
    """
    c = config
    # one entry per feature family in feature_names' order (a flat table, to read against
    # docs/features.md; its repeated `for w in ...` lines are alike in shape, not logic)
    ages: dict[str, int] = {}
    for h in c.return_horizons:
        ages[f"logret_{h}"] = h
    for w in c.ma_windows:
        ages[f"sma_dist_{w}"] = w - 1
    for w in c.ma_windows:
        ages[f"ema_dist_{w}"] = w - 1
    ages["rsi"] = c.rsi_window
    ages["macd"] = c.macd_slow - 1
    ages["macd_signal"] = c.macd_slow - 1 + c.macd_signal - 1
    ages["macd_hist"] = ages["macd_signal"]
    ages["bb_pct_b"] = c.bb_window - 1
    ages["bb_width"] = c.bb_window - 1
    ages["atr_pct"] = c.atr_window - 1
    ages["adx"] = 2 * c.adx_window - 1
    ages["plus_di"] = c.adx_window
    ages["minus_di"] = c.adx_window
    ages["stoch_k"] = c.stoch_window - 1
    ages["stoch_d"] = c.stoch_window - 1 + c.stoch_smooth - 1
    for w in c.vol_windows:
        ages[f"rv_{w}"] = w
    for w in c.vol_windows:
        ages[f"parkinson_{w}"] = w - 1
    for w in c.vol_windows:
        ages[f"garman_klass_{w}"] = w - 1
    ages["volume_z"] = c.volume_z_window - 1
    ages["obv_slope"] = c.obv_slope_window - 1
    for name in ("hour_sin", "hour_cos", "dow_sin", "dow_cos"):
        ages[name] = 0
    return ages


def aux_first_valid_age(config: FeatureConfig) -> dict[str, int]:
    """Same as :func:`first_valid_age` for :data:`AUX_COLUMNS`."""
    return {"atr": config.atr_window - 1, "bars_since_reset": 0, "gap_reset": 0}


def feature_names(config: FeatureConfig | None = None) -> list[str]:
    """The model feature columns, in output order. All are scale-free (no price units).

    The auxiliary columns (:data:`AUX_COLUMNS`: absolute ``atr``, ``bars_since_reset``,
    ``gap_reset``) are emitted next to them but are not model features.
    """
    return list(first_valid_age(config or FeatureConfig()))


def output_columns(config: FeatureConfig | None = None) -> list[str]:
    """Every float64 column :func:`compute_features` adds after the id columns."""
    return [*feature_names(config), *AUX_COLUMNS]


def warmup_bars(config: FeatureConfig | None = None) -> int:
    """Contiguous bars needed before every feature is defined (history to load before live use)."""
    cfg = config or FeatureConfig()
    return 1 + max(*first_valid_age(cfg).values(), *aux_first_valid_age(cfg).values())


def _decay_bars(alpha: float, tol: float) -> int:
    """Bars until a seed's weight ``(1 - alpha)^k`` in an exponential average is below ``tol``."""
    return math.ceil(math.log(tol) / math.log(1.0 - alpha))


def priming_bars(config: FeatureConfig | None = None, tol: float = 1e-12) -> int:
    """Contiguous history to feed a fresh incremental engine so that its features match the
    batch features of a longer history to about ``tol`` (relative).

    The recursive features (EMAs, Wilder averages) remember their seed; its weight decays as
    ``(1 - alpha)^k``. This is :func:`warmup_bars` plus the longest chain of such decays (MACD
    signal on top of the slow EMA, ADX on top of the smoothed DI). Windowed features need only
    :func:`warmup_bars`. With the defaults 796 bars.
    """
    cfg = config or FeatureConfig()
    ema = lambda n: _decay_bars(2.0 / (n + 1.0), tol)  # noqa: E731
    wilder = lambda n: _decay_bars(1.0 / n, tol)  # noqa: E731
    chains = [
        *(ema(w) for w in cfg.ma_windows),
        ema(cfg.macd_slow) + ema(cfg.macd_signal),
        wilder(cfg.rsi_window),
        wilder(cfg.atr_window),
        2 * wilder(cfg.adx_window),
    ]
    return warmup_bars(cfg) + max(chains)
