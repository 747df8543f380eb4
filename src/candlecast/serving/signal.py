"""Pure signal logic: staleness, candles -> features, forecasts -> the policy's target, risk
suggestions.

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
from candlecast.policy import Forecast, Policy, PolicyDecision
from candlecast.risk import Action as RiskAction
from candlecast.risk import RiskConfig, RiskEngine
from candlecast.serving.model import ModelOutput
from candlecast.serving.schemas import (
    Action,
    Candle,
    ExecutionAnswer,
    HorizonForecast,
    PolicyAnswer,
    SignalResponse,
)


def feature_age(feature_time: pd.Timestamp, now: pd.Timestamp) -> pd.Timedelta:
    return now - feature_time


def is_stale(feature_time: pd.Timestamp, now: pd.Timestamp, step: pd.Timedelta,
             max_age_bars: float) -> bool:
    """Older than ``max_age_bars`` bars, or from the future by more than one bar (a clock or
    data error: refused too, never predicted on)."""
    age = feature_age(feature_time, now)
    return age > step * max_age_bars or age < -step


def policy_decision(policy: Policy | None, out: ModelOutput, position: float,
                    bars_held: int) -> PolicyDecision | None:
    """The policy's decision on the model's forecast for its horizon (None without a policy:
    the model is served flat). A forecast the model did not give is unknown (NaN): the policy
    keeps the position and opens nothing."""
    if policy is None:
        return None
    er, prob = math.nan, math.nan
    if out.forecasts is not None and policy.horizon in out.forecasts:
        prob, er = out.forecasts[policy.horizon]
    vol = math.nan if out.volatility is None else out.volatility
    return policy.decide(Forecast(er, vol, prob), position, bars_held)


def action_of(target: float) -> Action:
    return "long" if target > 0 else "short" if target < 0 else "flat"


def risk_suggestion(
    target: float,
    price: float,
    atr: float,
    timestamp: pd.Timestamp,
    timeframe: str,
    symbol: str,
    risk: RiskConfig,
) -> tuple[float, float | None, float | None]:
    """``(size_fraction, stop_price, take_profit)`` of the ``target`` for a fresh account of
    equity 1.

    The SAME :class:`RiskEngine` call the backtester and the trader make for a policy target
    (``decide_entry`` with the target's notional) decides: caps shrink it, a rejected entry
    (no ATR for an ATR stop, ...) suggests size 0 and no levels. The trader applies its own
    engine with its real equity and state; these are suggestions.
    """
    if target == 0.0 or not (price > 0) or math.isinf(price):
        return 0.0, None, None
    side = 1 if target > 0 else -1
    engine = RiskEngine(risk, timeframe)
    ts = int(timestamp.value)
    decision = engine.decide_entry(engine.start(1.0, ts), symbol, side, ts, 1.0, price,
                                   atr=atr, notional_fraction=abs(target))
    if decision.action != RiskAction.ENTER:
        return 0.0, None, None
    return (
        float(decision.qty * price),
        _level(decision.stop),
        _level(decision.target),
    )


def _level(value: float) -> float | None:
    return float(value) if value == value and not math.isinf(value) else None


def _num(x: float) -> float | None:
    return None if x != x or math.isinf(x) else float(x)


def policy_answer(policy: Policy | None, decision: PolicyDecision | None
                  ) -> tuple[PolicyAnswer, ExecutionAnswer | None]:
    if policy is None or decision is None:
        return PolicyAnswer(reason="no_policy", edge=None, entry_threshold=None,
                            exit_threshold=None, size=None, horizon=None, label=None), None
    ex = policy.config.execution
    return (PolicyAnswer(reason=str(decision.reason), edge=_num(decision.edge),
                         entry_threshold=decision.entry_threshold,
                         exit_threshold=decision.exit_threshold, size=_num(decision.size),
                         horizon=policy.horizon, label=policy.config.label()),
            ExecutionAnswer(**ex.model_dump()))


def ok_response(out: ModelOutput, policy: Policy | None, decision: PolicyDecision | None,
                size: float, stop: float | None, take: float | None, model_version: str,
                feature_time: datetime) -> SignalResponse:
    target = 0.0 if decision is None else float(decision.target)
    reason, execution = policy_answer(policy, decision)
    return SignalResponse(
        status="ok", prob_up=out.prob_up, quantiles=out.quantiles, confidence=out.confidence,
        disagreement=out.disagreement, target_position=target, policy=reason,
        execution=execution,
        forecasts=None if out.forecasts is None else {
            str(h): HorizonForecast(prob_up=p, expected_return=e)
            for h, (p, e) in out.forecasts.items()},
        volatility=out.volatility, action=action_of(target), size_fraction=size,
        stop_price=stop, take_profit=take, model_version=model_version,
        feature_timestamp=feature_time,
    )


def stale_response(model_version: str, feature_time: datetime | None) -> SignalResponse:
    """Refusal: no forecast, so no target (the caller keeps what it holds and opens nothing),
    flat, nothing to size."""
    return SignalResponse(
        status="stale", prob_up=None, quantiles=None, confidence=None, disagreement=None,
        target_position=None, policy=None,
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
