"""The trader's side of ``/portfolio``: the request it sends and the answer it trusts.

Request (``POST {base}/portfolio``)::

    {"exchange", "timeframe",
     "candles": {"<symbol>": [{"timestamp", "open", "high", "low", "close", "volume"}, ...]},
     "positions": {"<symbol>": {"weight": float, "bars_held": int}}}

``weight`` is the coin's intended position as a signed fraction of the book's equity at the
candle's close (a working order's goal included: the ``frac`` the portfolio backtester gives
its decider). The answer::

    {"status": "ok"|"stale", "weights": {"<symbol>": float} | null, "reason",
     "execution": {...}, "model_version", "feature_timestamp", "coins": {...}, ...}

Anything but a well-formed 200 raises :class:`~candlecast.trading.signals.SignalUnavailable`;
an answer is fresh when it is ``ok`` and decided at the close of the candle just processed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from candlecast.backtest.config import ExecutionConfig
from candlecast.common.time import as_utc
from candlecast.trading.candles import Bar
from candlecast.trading.signals import (
    HttpSignalClient,
    SignalUnavailable,
    _execution,
    ask_until_fresh,
    candles_payload,
)

MAX_WEIGHT = 10.0


@dataclass(frozen=True)
class PortfolioAnswer:
    """One answer of ``/portfolio``."""

    status: str
    weights: dict[str, float]
    reason: str
    execution: ExecutionConfig
    model_version: str = ""
    feature_timestamp: pd.Timestamp | None = None
    coins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def is_fresh(self, candle_close: pd.Timestamp, max_lag_s: float = 0.0) -> bool:
        if self.status != "ok" or self.feature_timestamp is None:
            return False
        lag = (candle_close - self.feature_timestamp).total_seconds()
        return -1e-6 <= lag <= max_lag_s + 1e-6


def parse_portfolio(payload: object) -> PortfolioAnswer:
    """A :class:`PortfolioAnswer` from the JSON body of a 200 answer, or
    ``SignalUnavailable('malformed')``."""
    if not isinstance(payload, Mapping):
        raise SignalUnavailable("malformed", f"response is not a JSON object: {payload!r:.80}")
    status = payload.get("status")
    if status not in ("ok", "stale"):
        raise SignalUnavailable("malformed", f"response status {status!r} is not 'ok'/'stale'")
    raw = payload.get("weights")
    weights: dict[str, float] = {}
    if status == "ok":
        if not isinstance(raw, Mapping):
            raise SignalUnavailable("malformed", "an 'ok' answer needs a 'weights' object")
        for symbol, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and abs(value) <= MAX_WEIGHT):
                raise SignalUnavailable("malformed", f"weights[{symbol!r}] is not a finite "
                                        f"weight: {value!r}")
            weights[str(symbol)] = float(value)
    stamp = payload.get("feature_timestamp")
    try:
        when = None if stamp is None else as_utc(pd.Timestamp(stamp))
    except (TypeError, ValueError) as error:
        raise SignalUnavailable("malformed", f"feature_timestamp {stamp!r}: {error}") from error
    coins = payload.get("coins") or {}
    if not isinstance(coins, Mapping):
        raise SignalUnavailable("malformed", "response field 'coins' is not an object")
    return PortfolioAnswer(str(status), weights, str(payload.get("reason") or ""),
                           _execution(payload.get("execution")),
                           str(payload.get("model_version") or ""), when, coins)


def portfolio_body(exchange: str, timeframe: str, candles: Mapping[str, Sequence[Bar]],
                   positions: Mapping[str, tuple[float, int]]) -> dict[str, Any]:
    """The JSON body of ``/portfolio``: every coin's recent candles and the book held."""
    for symbol, (weight, _) in positions.items():
        if not math.isfinite(weight):
            raise ValueError(f"{symbol}: weight must be finite, got {weight}")
    return {"exchange": exchange, "timeframe": timeframe,
            "candles": {s: candles_payload(list(bars)) for s, bars in candles.items() if bars},
            "positions": {s: {"weight": float(w), "bars_held": int(h)}
                          for s, (w, h) in positions.items()}}


class HttpPortfolioClient(HttpSignalClient):
    """The HTTP client with ``POST /portfolio`` (the trader's portfolio mode)."""

    def portfolio(self, exchange: str, timeframe: str, candles: Mapping[str, Sequence[Bar]],
                  positions: Mapping[str, tuple[float, int]]) -> PortfolioAnswer:
        return parse_portfolio(self._post_json(
            "/portfolio", portfolio_body(exchange, timeframe, candles, positions)))


def fetch_fresh_portfolio(
    client: Any, config: Any, close: pd.Timestamp, candles: Mapping[str, Sequence[Bar]],
    positions: Mapping[str, tuple[float, int]], sleep: Callable[[float], None] = time.sleep,
) -> tuple[PortfolioAnswer | None, str]:
    """Ask ``client.portfolio`` for the book's targets at the candle closing at ``close``,
    retrying ``signal_retries`` times with doubling backoff; ``(answer, "")`` when fresh,
    else ``(None, why)``."""
    return ask_until_fresh(
        lambda: client.portfolio(config.exchange, config.timeframe, candles, positions),
        close, config, sleep, "portfolio answer")
