"""The trader's side of the signal-service contract: a parsed answer, a protocol, an HTTP client.

Contract (the BentoML service implements it): ``POST {base}/signal`` with
``{"exchange", "symbol", "timeframe"}`` and ``POST {base}/predict`` with the same plus
``"candles": [{"timestamp" (ISO 8601 UTC open time), "open", "high", "low", "close",
"volume"}, ...]`` both answer 200 with::

    {"status": "ok"|"stale", "prob_up", "quantiles", "confidence", "disagreement",
     "action": "long"|"short"|"flat", "size_fraction", "stop_price", "take_profit",
     "model_version", "feature_timestamp"}

and 4xx ``{"error", "field"}`` on bad input; ``GET {base}/readyz`` is 200 when ready.

Anything but a well-formed 200 raises :class:`SignalUnavailable` with a ``kind`` (``timeout``,
``connection``, ``server_error``, ``bad_request``, ``malformed``); a ``stale`` answer is returned
as such and the trader decides whether it is fresh (see :meth:`Signal.is_fresh`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from candlecast.common.time import as_utc
from candlecast.data.schema import SeriesId
from candlecast.trading.candles import Bar, bars_from_frame

ACTIONS = {"long": 1, "short": -1, "flat": 0}


class SignalUnavailable(Exception):
    """No usable answer from the signal service; ``kind`` says why (for reports and tests)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}"[:300])


@dataclass(frozen=True)
class Signal:
    """One answer of the service."""

    status: str
    action: str
    prob_up: float = math.nan
    quantiles: Mapping[str, float] = field(default_factory=dict)
    confidence: float = math.nan
    disagreement: float = math.nan
    size_fraction: float = 0.0
    stop_price: float = math.nan
    take_profit: float = math.nan
    model_version: str = ""
    feature_timestamp: pd.Timestamp | None = None

    @property
    def side(self) -> int:
        """+1 long, -1 short, 0 flat."""
        return ACTIONS[self.action]

    def is_fresh(self, candle_close: pd.Timestamp, max_lag_s: float = 0.0) -> bool:
        """``ok`` and computed from the candle closing at ``candle_close`` (or at most
        ``max_lag_s`` older). A signal without a feature timestamp is never fresh."""
        if self.status != "ok" or self.feature_timestamp is None:
            return False
        lag = (candle_close - self.feature_timestamp).total_seconds()
        return -1e-6 <= lag <= max_lag_s + 1e-6

    def win_probability(self, side: int) -> float:
        """P(the ``side`` trade wins) from ``prob_up`` (NaN when unknown)."""
        return self.prob_up if side > 0 else 1.0 - self.prob_up

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "status": self.status, "action": self.action, "prob_up": num(self.prob_up),
            "quantiles": dict(self.quantiles), "confidence": num(self.confidence),
            "disagreement": num(self.disagreement), "size_fraction": self.size_fraction,
            "stop_price": num(self.stop_price), "take_profit": num(self.take_profit),
            "model_version": self.model_version,
            "feature_timestamp": None if self.feature_timestamp is None
            else self.feature_timestamp.isoformat(),
        }


def _number(payload: Mapping[str, Any], name: str, required: bool = False) -> float:
    value = payload.get(name)
    if value is None:
        if required:
            raise SignalUnavailable("malformed", f"response field {name!r} is missing")
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalUnavailable("malformed", f"response field {name!r} is not a number: {value!r}")
    return float(value)


def parse_signal(payload: object) -> Signal:
    """A :class:`Signal` from the JSON body of a 200 answer; ``SignalUnavailable('malformed')``
    when it breaks the contract."""
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
    return Signal(
        status=str(status), action=str(action), prob_up=prob,
        quantiles={str(k): float(v) for k, v in quantiles.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)},
        confidence=_number(payload, "confidence"),
        disagreement=_number(payload, "disagreement"),
        size_fraction=0.0 if math.isnan(size) else size,
        stop_price=_number(payload, "stop_price"), take_profit=_number(payload, "take_profit"),
        model_version=str(payload.get("model_version") or ""), feature_timestamp=feature_ts,
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
    """What the trader needs from the signal service (tests inject in-process fakes)."""

    def signal(self, series: SeriesId) -> Signal:
        """The signal from the features the service reads online; raises SignalUnavailable."""
        ...

    def predict(self, series: SeriesId, candles: Sequence[Bar]) -> Signal:
        """The signal from ``candles`` (recent closed candles, oldest first)."""
        ...

    def ready(self) -> bool: ...


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

    def signal(self, series: SeriesId) -> Signal:
        return self._post("/signal", _series_body(series))

    def predict(self, series: SeriesId, candles: pd.DataFrame | Sequence[Bar]) -> Signal:
        return self._post("/predict", {**_series_body(series), "candles": candles_payload(candles)})

    def _post(self, path: str, body: dict[str, Any]) -> Signal:
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
            payload = response.json()
        except ValueError as error:
            raise SignalUnavailable("malformed", f"POST {path}: body is not JSON") from error
        return parse_signal(payload)


def _series_body(series: SeriesId) -> dict[str, str]:
    return {"exchange": series.exchange, "symbol": series.symbol, "timeframe": series.timeframe}


def fetch_fresh_signal(
    client: SignalClient,
    series: SeriesId,
    bar: Bar,
    recent: Sequence[Bar],
    config: Any,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Signal | None, str]:
    """Ask ``client`` for the signal of the candle ``bar`` just closed (``signal`` or ``predict``
    with ``recent`` candles, per ``config.signal_endpoint``), retrying ``signal_retries`` times
    with doubling backoff. Returns ``(signal, "")`` when fresh, else ``(None, why)``."""
    close = bar.close_time(int(series.step.value))
    why = ""
    for attempt in range(config.signal_retries + 1):
        if attempt:
            sleep(min(config.signal_backoff_max_s,
                      config.signal_backoff_s * 2 ** (attempt - 1)))
        try:
            if config.signal_endpoint == "predict":
                sig = client.predict(series, recent)
            else:
                sig = client.signal(series)
        except SignalUnavailable as error:
            why = str(error)
            continue
        if sig.is_fresh(close, config.max_signal_lag_s):
            return sig, ""
        why = (f"{sig.status} signal (feature_timestamp {sig.feature_timestamp}, "
               f"candle close {close})")
    return None, why
