"""Pure signal logic: staleness, candles -> features, P(up) -> action, risk suggestions.

No I/O: values in, values out, so the same functions back ``/signal`` and ``/predict`` and are
tested without a server.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd

from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.features import FeatureConfig, IncrementalFeatureEngine
from candlecast.risk import Action as RiskAction
from candlecast.risk import RiskConfig, RiskEngine
from candlecast.serving.config import DecisionConfig
from candlecast.serving.model import ModelOutput
from candlecast.serving.schemas import Action, Candle, SignalResponse


def feature_age(feature_time: pd.Timestamp, now: pd.Timestamp) -> pd.Timedelta:
    return now - feature_time


def is_stale(feature_time: pd.Timestamp, now: pd.Timestamp, step: pd.Timedelta,
             max_age_bars: float) -> bool:
    """Older than ``max_age_bars`` bars, or from the future by more than one bar (a clock or
    data error: refused too, never predicted on)."""
    age = feature_age(feature_time, now)
    return age > step * max_age_bars or age < -step


def decide_action(prob_up: float, cfg: DecisionConfig) -> Action:
    if prob_up > 0.5 + cfg.band:
        return "long"
    if prob_up < 0.5 - cfg.band and cfg.allow_short:
        return "short"
    return "flat"


def risk_suggestion(
    action: str,
    prob_up: float,
    price: float,
    atr: float,
    bar_volatility: float,
    timestamp: pd.Timestamp,
    timeframe: str,
    symbol: str,
    risk: RiskConfig,
) -> tuple[float, float | None, float | None]:
    """``(size_fraction, stop_price, take_profit)`` for a fresh account of equity 1.

    The SAME :class:`RiskEngine` the backtester and the trader use decides: a rejected entry
    (no ATR for an ATR stop, no edge for Kelly, ...) suggests size 0 and no levels. The
    trader applies its own engine with its real equity and state; these are suggestions.
    """
    if action == "flat" or not (price > 0) or math.isinf(price):
        return 0.0, None, None
    side = 1 if action == "long" else -1
    engine = RiskEngine(risk, timeframe)
    ts = int(timestamp.value)
    decision = engine.decide_entry(
        engine.start(1.0, ts), symbol, side, ts, 1.0, price,
        atr=atr, volatility=bar_volatility,
        probability=prob_up if side > 0 else 1.0 - prob_up,
    )
    if decision.action != RiskAction.ENTER:
        return 0.0, None, None
    return (
        float(decision.qty * price),
        _level(decision.stop),
        _level(decision.target),
    )


def _level(value: float) -> float | None:
    return float(value) if value == value and not math.isinf(value) else None


def ok_response(out: ModelOutput, action: Action, size: float, stop: float | None,
                take: float | None, model_version: str, feature_time: datetime) -> SignalResponse:
    return SignalResponse(
        status="ok", prob_up=out.prob_up, quantiles=out.quantiles, confidence=out.confidence,
        disagreement=out.disagreement, action=action, size_fraction=size, stop_price=stop,
        take_profit=take, model_version=model_version, feature_timestamp=feature_time,
    )


def stale_response(model_version: str, feature_time: datetime | None) -> SignalResponse:
    """Refusal: no probability, flat, nothing to size."""
    return SignalResponse(
        status="stale", prob_up=None, quantiles=None, confidence=None, disagreement=None,
        action="flat", size_fraction=0.0, stop_price=None, take_profit=None,
        model_version=model_version, feature_timestamp=feature_time,
    )


def candles_frame(candles: list[Candle]) -> pd.DataFrame:
    """Request candles as a table (UTC ns timestamps, float64 prices)."""
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([c.timestamp for c in candles], utc=True),
            "open": np.array([c.open for c in candles], dtype=np.float64),
            "high": np.array([c.high for c in candles], dtype=np.float64),
            "low": np.array([c.low for c in candles], dtype=np.float64),
            "close": np.array([c.close for c in candles], dtype=np.float64),
            "volume": np.array([c.volume for c in candles], dtype=np.float64),
        }
    )


def features_from_candles(
    candles: pd.DataFrame, series_id: str, timeframe: str, config: FeatureConfig
) -> pd.DataFrame:
    """Feature rows of ``candles`` by the incremental engine (the code the trader runs live),
    in the Feast layout: ``series_id``, ``event_timestamp`` (= open + timeframe, the close),
    every feature and auxiliary column, and ``close``."""
    engine = IncrementalFeatureEngine(config, timeframe=timeframe)
    rows = engine.update_many(candles)
    step = pd.Timedelta(engine.step_ns, unit="ns")
    rows.insert(0, JOIN_KEY, series_id)
    rows.insert(1, EVENT_TIMESTAMP, candles["timestamp"] + step)
    rows["close"] = candles["close"].to_numpy()
    return rows


def price_from_features(values: dict[str, float]) -> float:
    """The close of a feature row: ``close`` if stored, else ``atr / atr_pct`` (the identity
    of the definitions, exact to rounding), else NaN."""
    close = values.get("close", math.nan)
    if close == close:
        return close
    atr, pct = values.get("atr", math.nan), values.get("atr_pct", math.nan)
    if atr > 0 and pct > 0:
        return atr / pct
    return math.nan


def volatility_column(config: FeatureConfig) -> str:
    """Per-bar realized volatility feature used for vol-target sizing (longest window)."""
    return f"rv_{max(config.vol_windows)}"
