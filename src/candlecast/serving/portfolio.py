"""``/portfolio``: the book's target weights for the whole universe, from the candles in the
request (stateless, like ``/predict``).

The served model is a registered ``candlecast-portfolio`` version: the pooled ensemble of the
relative target with, in its metadata, the portfolio construction chosen for it, the
universe, and the feature and cross-section definitions it was trained on. An answer:

1. per coin, the features of its candles by the incremental engine (what the trader runs
   live); the decision bar is the latest candle of the request; a coin without a candle then,
   or with too little history for its features, is not tradable at this bar;
2. the cross-section of the coins' feature rows (the one definition; batch == incremental);
3. per tradable coin, the model on its last rows: the expected return relative to the
   basket per horizon and the volatility; beta and correlation to the basket from step 2;
4. the SAME :class:`~candlecast.portfolio.PortfolioConstructor` the backtest ran, with the
   caller's weights and bars held: the target weights and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from candlecast.backtest.config import CostConfig
from candlecast.data.schema import SeriesId
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.features import FeatureConfig, warmup_bars
from candlecast.features.cross_section import CrossSectionConfig, compute_cross_section
from candlecast.portfolio import CoinForecast, PortfolioConfig, PortfolioConstructor
from candlecast.serving.model import ModelError, PyfuncSignalModel
from candlecast.serving.schemas import (
    CoinAnswer,
    ExecutionAnswer,
    PortfolioRequest,
    PortfolioResponse,
    RequestError,
)
from candlecast.serving.signal import candles_frame, features_from_candles

NAN = math.nan
CLOSE_TOLERANCE = pd.Timedelta(seconds=2)


def _num(x: float) -> float | None:
    return None if x is None or x != x or math.isinf(x) else float(x)


@dataclass
class PortfolioModel:
    """A loaded portfolio model: the pyfunc and what its metadata carries."""

    model: PyfuncSignalModel
    config: PortfolioConfig
    costs: CostConfig
    universe: tuple[str, ...]  # series ids, universe order
    symbols: tuple[str, ...]
    universe_id: str
    cross_section: CrossSectionConfig
    features: FeatureConfig

    @classmethod
    def from_model(cls, model: PyfuncSignalModel) -> PortfolioModel:
        meta = (model.pyfunc.metadata.metadata or {}).get("candlecast", {})
        if not meta.get("portfolio"):
            raise ModelError(f"model {model.info.model_version} carries no portfolio "
                             "construction (was it registered by the portfolio path?)")
        try:
            return cls(model, PortfolioConfig.model_validate(meta["portfolio"]),
                       CostConfig.model_validate(meta.get("costs") or {}),
                       tuple(meta["universe"]), tuple(meta["universe_symbols"]),
                       str(meta["universe_id"]),
                       CrossSectionConfig.model_validate(meta["cross_section"]),
                       FeatureConfig.model_validate(meta["features"]))
        except (KeyError, ValueError) as err:
            raise ModelError(f"the portfolio model's metadata is incomplete: {err}") from err

    @property
    def min_candles(self) -> int:
        """Candles a coin needs for its features, cross-section windows and model window."""
        return (warmup_bars(self.features) + self.cross_section.beta_window
                + self.model.window_rows)

    def constructor(self, step: pd.Timedelta) -> PortfolioConstructor:
        return PortfolioConstructor(self.config, self.costs, pd.Timedelta(days=365) / step)


def _check_universe(pm: PortfolioModel, request: PortfolioRequest) -> dict[str, str]:
    """Symbol -> series id of the request's coins; every coin must be in the universe."""
    exchange, timeframe = (SeriesId.from_key(pm.universe[0]).exchange,
                           SeriesId.from_key(pm.universe[0]).timeframe)
    if request.exchange != exchange:
        raise RequestError(404, f"the portfolio trades {exchange}, not {request.exchange}",
                           "exchange")
    if request.timeframe != timeframe:
        raise RequestError(404, f"the portfolio trades {timeframe} bars, not "
                           f"{request.timeframe}", "timeframe")
    known = dict(zip(pm.symbols, pm.universe, strict=True))
    for where, symbols in (("candles", request.candles), ("positions", request.positions)):
        for symbol in symbols:
            if symbol not in known:
                raise RequestError(404, f"{symbol} is not in the universe "
                                   f"{list(pm.symbols)}", f"{where}.{symbol}")
    return known


def answer_portfolio(pm: PortfolioModel, request: PortfolioRequest, now: pd.Timestamp,
                     max_candles: int, max_age_bars: float | None = None) -> PortfolioResponse:
    """The answer of ``/portfolio`` (see the module docstring); client errors raise
    :class:`RequestError`, model failures :class:`ModelError`."""
    known = _check_universe(pm, request)
    step = SeriesId("x", "A/B", request.timeframe).step
    for symbol, rows in request.candles.items():
        if len(rows) > max_candles:
            raise RequestError(422, f"candles.{symbol}: at most {max_candles} candles, got "
                               f"{len(rows)}", f"candles.{symbol}")
    last_open = max(pd.Timestamp(rows[-1].timestamp) for rows in request.candles.values())
    if last_open + step > now + CLOSE_TOLERANCE:
        raise RequestError(422, f"candles: the latest candle {last_open.isoformat()} has not "
                           f"closed yet (closes at {(last_open + step).isoformat()}); send "
                           "closed candles only", "candles")
    decision_close = last_open + step
    version = pm.model.info.model_version
    weights = {s: p.weight for s, p in request.positions.items()}
    if max_age_bars is not None and now - decision_close > max_age_bars * step:
        return _stale(pm, weights, version, decision_close.to_pydatetime())
    frames, why = {}, {}
    need = pm.min_candles
    for symbol, rows in request.candles.items():
        if pd.Timestamp(rows[-1].timestamp) != last_open:
            why[symbol] = "no candle at the decision bar"
        elif len(rows) < need:
            why[symbol] = f"{len(rows)} candles; {need} needed for its features"
        try:
            frames[symbol] = features_from_candles(candles_frame(rows), known[symbol],
                                                   request.timeframe, pm.features)
        except ValueError as err:
            raise RequestError(422, f"candles.{symbol}: {err}", f"candles.{symbol}") from err
    forecasts, coin_rows = _forecasts(pm, frames, known, why, decision_close, step)
    constructor = pm.constructor(step)
    tradable = {s for s in frames if s not in why}
    held = {s: p.bars_held for s, p in request.positions.items()}
    decision = constructor.decide(forecasts, weights, held, tradable,
                                  int(last_open.value) // int(step.value))
    coins = {s: CoinAnswer(
        weight=decision.weights[s], current=float(weights.get(s, 0.0)),
        action=decision.coins[s], tradable=s in tradable,
        detail=why.get(s, "" if s in frames else "no candles in the request"),
        expected_return=_num(forecasts[s].expected_return),
        volatility=_num(forecasts[s].volatility), beta=_num(forecasts[s].beta),
        correlation=_num(forecasts[s].correlation)) for s in pm.symbols}
    cfg = pm.config
    return PortfolioResponse(
        status="ok", weights=dict(decision.weights), reason=decision.reason, coins=coins,
        gross=decision.gross, net=decision.net, beta=_num(decision.beta),
        volatility=_num(decision.volatility), expected_gain=_num(decision.expected_gain),
        cost=_num(decision.cost), horizon=cfg.horizon, label=cfg.label(),
        portfolio=cfg.model_dump(mode="json"),
        execution=ExecutionAnswer.model_validate(cfg.execution.model_dump(mode="json")),
        universe=list(pm.symbols), model_version=version,
        feature_timestamp=decision_close.to_pydatetime())


def _forecasts(pm: PortfolioModel, frames: Mapping[str, pd.DataFrame], known: dict[str, str],
               why: dict[str, str], close: pd.Timestamp, step: pd.Timedelta
               ) -> tuple[dict[str, CoinForecast], dict[str, pd.DataFrame]]:
    """Every universe coin's forecast at the decision bar (NaN where it has none)."""
    empty = CoinForecast(NAN, NAN)
    out = {s: empty for s in pm.symbols}
    if not frames:
        return out, {}
    long = pd.concat(frames.values(), ignore_index=True)
    sids = [known[s] for s in pm.symbols]
    try:
        coins, universe = compute_cross_section(long, list(pm.symbols), sids, step,
                                                pm.cross_section, pm.universe_id)
    except ValueError as err:
        raise RequestError(422, f"candles: {err}", "candles") from err
    universe = universe.drop(columns=["universe_id"])
    rows: dict[str, pd.DataFrame] = {}
    h = pm.config.horizon
    for symbol, frame in frames.items():
        merged = frame.merge(coins[coins[JOIN_KEY] == known[symbol]].drop(columns=[JOIN_KEY]),
                             on=EVENT_TIMESTAMP, how="left").merge(
            universe, on=EVENT_TIMESTAMP, how="left")
        rows[symbol] = merged
        last = merged.iloc[-1]
        beta, corr = float(last["xs_beta"]), float(last["xs_corr"])
        if symbol in why:
            out[symbol] = CoinForecast(NAN, NAN, beta, corr)
            continue
        answer = pm.model.predict(merged.tail(pm.model.window_rows))
        er = (answer.forecasts or {}).get(h, (NAN, NAN))[1]
        vol = NAN if answer.volatility is None else answer.volatility
        out[symbol] = CoinForecast(er, vol, beta, corr)
        if er != er:
            why[symbol] = f"the model gave no forecast for horizon {h}"
    return out, rows


def _stale(pm: PortfolioModel, weights: Mapping[str, float], version: str,
           when: datetime) -> PortfolioResponse:
    coins = {s: CoinAnswer(weight=float(weights.get(s, 0.0)), current=float(weights.get(s, 0.0)),
                           action="hold" if weights.get(s) else "flat", tradable=False,
                           detail="stale", expected_return=None, volatility=None, beta=None,
                           correlation=None) for s in pm.symbols}
    cfg = pm.config
    return PortfolioResponse(
        status="stale", weights=None, reason="stale", coins=coins, gross=None, net=None,
        beta=None, volatility=None, expected_gain=None, cost=None, horizon=cfg.horizon,
        label=cfg.label(), portfolio=cfg.model_dump(mode="json"),
        execution=ExecutionAnswer.model_validate(cfg.execution.model_dump(mode="json")),
        universe=list(pm.symbols),
        model_version=version, feature_timestamp=when)


def describe(pm: PortfolioModel | None, error: str | None) -> dict[str, Any]:
    """What ``/metadata`` says about the portfolio model."""
    if pm is None:
        return {"loaded": False, "error": error}
    info = pm.model.info
    return {"loaded": True, "model_version": info.model_version, "run_id": info.run_id,
            "universe": list(pm.symbols), "portfolio": pm.config.model_dump(mode="json"),
            "label": pm.config.label(), "min_candles": pm.min_candles, "error": None}
