"""The trader's side of the signal-service contract: a parsed answer, a protocol, an HTTP client.

Contract (the BentoML service implements it). Requests::

    POST {base}/signal   {"exchange", "symbol", "timeframe",
                          "position": float (default 0.0), "bars_held": int (default 0)}
    POST {base}/predict  the same plus "candles": [{"timestamp" (ISO 8601 UTC open time),
                          "open", "high", "low", "close", "volume"}, ...]

``position`` is what the trader holds or is heading to, as a signed fraction of equity at the
candle's close (a working order's goal included: exactly the ``frac`` that
:func:`candlecast.backtest.targets.run_targets` gives its decider), ``bars_held`` the candles
since the position was opened (0 when flat). Both answer 200 with::

    {"status": "ok"|"stale", "prob_up", "quantiles", "confidence", "disagreement",
     "action": "long"|"short"|"flat", "size_fraction", "stop_price", "take_profit",
     "model_version", "feature_timestamp",
     "target_position": float in [-1, 1] (null when stale),
     "policy": {"reason": str, "edge": float|null, "entry_threshold": float,
                "exit_threshold": float, "size": float|null, "horizon": int, "label": str},
     "execution": {"entry": "market"|"limit", "exit": "market"|"limit",
                   "limit_offset_bps": float, "expire_bars": int,
                   "on_expire": "cancel"|"market"},
     "forecasts": {"<horizon>": {"prob_up": float, "expected_return": float}, ...},
     "volatility": float|null}

``target_position`` is the policy's answer for the reported position (the same
:class:`~candlecast.policy.Policy` the backtest runs); ``action`` is its sign (checked);
``execution`` says how the orders toward it are worked (versioned with the model and its
policy). 4xx ``{"error", "field"}`` on bad input; ``GET {base}/readyz`` is 200 when ready.

Anything but a well-formed 200 raises :class:`SignalUnavailable` with a ``kind`` (``timeout``,
``connection``, ``server_error``, ``bad_request``, ``malformed``); a ``stale`` answer is returned
as such and the trader decides whether it is fresh (see :meth:`Signal.is_fresh`). A fresh answer
without a ``target_position`` (a service older than this contract) opens and closes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from pydantic import ValidationError

from candlecast.backtest.config import ExecutionConfig
from candlecast.common.time import as_utc
from candlecast.data.schema import SeriesId
from candlecast.trading.candles import Bar, bars_from_frame

ACTIONS = {"long": 1, "short": -1, "flat": 0}
NAN = math.nan
_DEFAULT_EXECUTION = ExecutionConfig()


class SignalUnavailable(Exception):
    """No usable answer from the signal service; ``kind`` says why (for reports and tests)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}"[:300])


@dataclass(frozen=True)
class PolicyInfo:
    """Why the service's policy chose its target (``policy`` in the answer)."""

    reason: str
    edge: float = NAN  # forecast log return over the policy's horizon
    entry_threshold: float = NAN
    exit_threshold: float = NAN
    size: float = NAN  # the vol-targeted size it would hold now
    horizon: int = 0
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "edge": _num(self.edge),
                "entry_threshold": _num(self.entry_threshold),
                "exit_threshold": _num(self.exit_threshold), "size": _num(self.size),
                "horizon": self.horizon, "label": self.label}


@dataclass(frozen=True)
class HorizonForecast:
    """The model's forecast for one horizon (``forecasts["<h>"]``)."""

    prob_up: float = NAN
    expected_return: float = NAN


@dataclass(frozen=True)
class Signal:
    """One answer of the service."""

    status: str
    action: str
    prob_up: float = NAN
    quantiles: Mapping[str, float] = field(default_factory=dict)
    confidence: float = NAN
    disagreement: float = NAN
    size_fraction: float = 0.0
    stop_price: float = NAN
    take_profit: float = NAN
    model_version: str = ""
    feature_timestamp: pd.Timestamp | None = None
    #: the policy's target (signed fraction of equity); NaN when the answer has none
    target_position: float = NAN
    policy: PolicyInfo | None = None
    execution: ExecutionConfig = _DEFAULT_EXECUTION
    forecasts: Mapping[int, HorizonForecast] = field(default_factory=dict)
    volatility: float = NAN

    @property
    def side(self) -> int:
        """+1 long, -1 short, 0 flat."""
        return ACTIONS[self.action]

    @property
    def has_target(self) -> bool:
        return not math.isnan(self.target_position)

    @property
    def reason(self) -> str:
        """The policy's reason (``""`` without one)."""
        return self.policy.reason if self.policy is not None else ""

    def is_fresh(self, candle_close: pd.Timestamp, max_lag_s: float = 0.0) -> bool:
        """``ok`` and computed from the candle closing at ``candle_close`` (or at most
        ``max_lag_s`` older). A signal without a feature timestamp is never fresh."""
        if self.status != "ok" or self.feature_timestamp is None:
            return False
        lag = (candle_close - self.feature_timestamp).total_seconds()
        return -1e-6 <= lag <= max_lag_s + 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "action": self.action, "prob_up": _num(self.prob_up),
            "quantiles": dict(self.quantiles), "confidence": _num(self.confidence),
            "disagreement": _num(self.disagreement), "size_fraction": self.size_fraction,
            "stop_price": _num(self.stop_price), "take_profit": _num(self.take_profit),
            "model_version": self.model_version,
            "feature_timestamp": None if self.feature_timestamp is None
            else self.feature_timestamp.isoformat(),
            "target_position": _num(self.target_position),
            "policy": None if self.policy is None else self.policy.to_dict(),
            "execution": self.execution.model_dump(mode="json"),
            "forecasts": {str(h): {"prob_up": _num(f.prob_up),
                                   "expected_return": _num(f.expected_return)}
                          for h, f in self.forecasts.items()},
            "volatility": _num(self.volatility),
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _number(payload: Mapping[str, Any], name: str, required: bool = False) -> float:
    value = payload.get(name)
    if value is None:
        if required:
            raise SignalUnavailable("malformed", f"response field {name!r} is missing")
        return NAN
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalUnavailable("malformed", f"response field {name!r} is not a number: {value!r}")
    return float(value)


def _policy(raw: object) -> PolicyInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("reason"), str):
        raise SignalUnavailable("malformed", "response field 'policy' must be an object with a "
                                "string 'reason'")
    horizon = raw.get("horizon", 0)
    if isinstance(horizon, bool) or not isinstance(horizon, int):
        raise SignalUnavailable("malformed", f"policy.horizon is not an integer: {horizon!r}")
    return PolicyInfo(reason=raw["reason"], edge=_number(raw, "edge"),
                      entry_threshold=_number(raw, "entry_threshold"),
                      exit_threshold=_number(raw, "exit_threshold"), size=_number(raw, "size"),
                      horizon=horizon, label=str(raw.get("label") or ""))


def _execution(raw: object) -> ExecutionConfig:
    if raw is None:
        return _DEFAULT_EXECUTION
    try:
        return ExecutionConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "execution"
        raise SignalUnavailable("malformed", f"execution.{where}: {first['msg']}") from error


def _forecasts(raw: object) -> dict[int, HorizonForecast]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SignalUnavailable("malformed", "response field 'forecasts' is not an object")
    out = {}
    for key, value in raw.items():
        try:
            horizon = int(key)
        except (TypeError, ValueError) as error:
            raise SignalUnavailable("malformed", f"forecasts key {key!r} is not a horizon "
                                    "(bars)") from error
        if not isinstance(value, Mapping):
            raise SignalUnavailable("malformed", f"forecasts[{key!r}] is not an object")
        out[horizon] = HorizonForecast(_number(value, "prob_up"),
                                       _number(value, "expected_return"))
    return out


def parse_signal(payload: object) -> Signal:
    """A :class:`Signal` from the JSON body of a 200 answer; ``SignalUnavailable('malformed')``
    when it breaks the contract (including a target outside [-1, 1] or an ``action`` that is
    not the target's sign)."""
    if not isinstance(payload, Mapping):
        raise SignalUnavailable("malformed", f"response is not a JSON object: {payload!r:.80}")
    status, action = payload.get("status"), payload.get("action")
    if status not in ("ok", "stale"):
        raise SignalUnavailable("malformed", f"response status {status!r} is not 'ok'/'stale'")
    if action not in ACTIONS:
        raise SignalUnavailable("malformed", f"response action {action!r} is not long/short/flat")
    quantiles = payload.get("quantiles") or {}
    if not isinstance(quantiles, Mapping):
        raise SignalUnavailable("malformed", "response field 'quantiles' is not an object")
    stamp = payload.get("feature_timestamp")
    try:
        feature_ts = None if stamp is None else pd.Timestamp(stamp)
    except (TypeError, ValueError) as error:
        raise SignalUnavailable("malformed", f"feature_timestamp {stamp!r}: {error}") from error
    if feature_ts is not None:
        feature_ts = as_utc(feature_ts)
    size = _number(payload, "size_fraction")
    prob = _number(payload, "prob_up")
    if not math.isnan(prob) and not 0.0 <= prob <= 1.0:
        raise SignalUnavailable("malformed", f"prob_up {prob} is outside [0, 1]")
    target = _number(payload, "target_position")
    if not math.isnan(target):
        if not -1.0 <= target <= 1.0:
            raise SignalUnavailable("malformed", f"target_position {target} is outside [-1, 1]")
        sign = 1 if target > 0 else -1 if target < 0 else 0
        if ACTIONS[str(action)] != sign:
            raise SignalUnavailable("malformed", f"action {action!r} is not the sign of "
                                    f"target_position {target}")
    return Signal(
        status=str(status), action=str(action), prob_up=prob,
        quantiles={str(k): float(v) for k, v in quantiles.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)},
        confidence=_number(payload, "confidence"),
        disagreement=_number(payload, "disagreement"),
        size_fraction=0.0 if math.isnan(size) else size,
        stop_price=_number(payload, "stop_price"), take_profit=_number(payload, "take_profit"),
        model_version=str(payload.get("model_version") or ""), feature_timestamp=feature_ts,
        target_position=target, policy=_policy(payload.get("policy")),
        execution=_execution(payload.get("execution")),
        forecasts=_forecasts(payload.get("forecasts")),
        volatility=_number(payload, "volatility"),
    )


def candles_payload(candles: pd.DataFrame | Sequence[Bar]) -> list[dict[str, Any]]:
    """Candles as the ``predict`` request wants them (ISO 8601 UTC open times, ``Z``)."""
    bars = bars_from_frame(candles) if isinstance(candles, pd.DataFrame) else candles
    out = []
    for bar in bars:
        seconds, rest = divmod(int(bar.ts), 1_000_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        if rest:
            stamp += f".{rest // 1000:06d}"
        out.append({"timestamp": stamp + "Z", "open": float(bar.open), "high": float(bar.high),
                    "low": float(bar.low), "close": float(bar.close),
                    "volume": float(bar.volume)})
    return out


class SignalClient(Protocol):
    """What the trader needs from the signal service (tests inject in-process fakes).

    ``position`` (signed fraction of equity, a working order's goal included) and ``bars_held``
    are what the trader holds at the candle's close: the policy's inputs besides the forecast.
    """

    def signal(self, series: SeriesId, position: float = 0.0, bars_held: int = 0) -> Signal:
        """The signal from the features the service reads online; raises SignalUnavailable."""
        ...

    def predict(self, series: SeriesId, candles: Sequence[Bar], position: float = 0.0,
                bars_held: int = 0) -> Signal:
        """The signal from ``candles`` (recent closed candles, oldest first)."""
        ...

    def ready(self) -> bool: ...

    # the portfolio mode (trade.decision: portfolio) also needs ``portfolio(exchange,
    # timeframe, candles, positions) -> PortfolioAnswer`` (trading/portfolio_signals.py)


class HttpSignalClient:
    """:class:`SignalClient` over HTTP (httpx, one keep-alive connection pool)."""

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        import httpx  # local: only the live path needs it

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._httpx = httpx
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __repr__(self) -> str:
        return f"HttpSignalClient({self.base_url!r}, timeout={self.timeout})"

    def close(self) -> None:
        self._client.close()

    def ready(self) -> bool:
        try:
            return self._client.get("/readyz").status_code == 200
        except self._httpx.HTTPError:
            return False

    def signal(self, series: SeriesId, position: float = 0.0, bars_held: int = 0) -> Signal:
        return self._post("/signal", request_body(series, position, bars_held))

    def predict(self, series: SeriesId, candles: pd.DataFrame | Sequence[Bar],
                position: float = 0.0, bars_held: int = 0) -> Signal:
        return self._post("/predict", {**request_body(series, position, bars_held),
                                       "candles": candles_payload(candles)})

    def _post(self, path: str, body: dict[str, Any]) -> Signal:
        return parse_signal(self._post_json(path, body))

    def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        httpx = self._httpx
        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException as error:
            raise SignalUnavailable("timeout", f"POST {path}: {error!r}") from error
        except httpx.HTTPError as error:
            raise SignalUnavailable("connection", f"POST {path}: {error!r}") from error
        if response.status_code >= 500:
            raise SignalUnavailable("server_error", f"POST {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise SignalUnavailable(
                "bad_request", f"POST {path}: HTTP {response.status_code}: {response.text[:200]}"
            )
        if response.status_code != 200:
            raise SignalUnavailable("malformed", f"POST {path}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as error:
            raise SignalUnavailable("malformed", f"POST {path}: body is not JSON") from error


def request_body(series: SeriesId, position: float = 0.0, bars_held: int = 0) -> dict[str, Any]:
    """The JSON body of ``/signal`` (``/predict`` adds ``candles``)."""
    if not math.isfinite(position):
        raise ValueError(f"position must be a finite fraction of equity, got {position}")
    return {"exchange": series.exchange, "symbol": series.symbol, "timeframe": series.timeframe,
            "position": float(position), "bars_held": int(bars_held)}


def fetch_fresh_signal(
    client: SignalClient,
    series: SeriesId,
    bar: Bar,
    recent: Sequence[Bar],
    config: Any,
    sleep: Callable[[float], None] = time.sleep,
    position: float = 0.0,
    bars_held: int = 0,
) -> tuple[Signal | None, str]:
    """Ask ``client`` for the signal of the candle ``bar`` just closed (``signal`` or ``predict``
    with ``recent`` candles, per ``config.signal_endpoint``), reporting ``position`` and
    ``bars_held``, retrying ``signal_retries`` times with doubling backoff. Returns
    ``(signal, "")`` when fresh, else ``(None, why)``."""
    close = bar.close_time(int(series.step.value))

    def ask() -> Signal:
        if config.signal_endpoint == "predict":
            return client.predict(series, recent, position, bars_held)
        return client.signal(series, position, bars_held)

    return ask_until_fresh(ask, close, config, sleep, "signal")


def ask_until_fresh(ask: Callable[[], Any], close: pd.Timestamp, config: Any,
                    sleep: Callable[[float], None], what: str) -> tuple[Any, str]:
    """``ask()`` until it answers fresh for the candle closing at ``close`` (an answer with
    ``is_fresh``, ``status``, ``feature_timestamp``), retrying ``signal_retries`` times with
    doubling backoff; ``(answer, "")``, else ``(None, why)``. The one retry rule of the signal
    and the portfolio contracts."""
    why = ""
    for attempt in range(config.signal_retries + 1):
        if attempt:
            sleep(min(config.signal_backoff_max_s,
                      config.signal_backoff_s * 2 ** (attempt - 1)))
        try:
            answer = ask()
        except SignalUnavailable as error:
            why = str(error)
            continue
        if answer.is_fresh(close, config.max_signal_lag_s):
            return answer, ""
        why = (f"{answer.status} {what} (feature_timestamp {answer.feature_timestamp}, "
               f"candle close {close})")
    return None, why
