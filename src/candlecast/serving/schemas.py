"""Typed request and response bodies of the signal service, and the one error shape.

Deliberately light (pydantic only, no pandas): ``bentos/service.py`` imports this module at
start-up in BentoML's arbiter process too, and the OpenAPI schema is generated from it.

Requests are parsed in strict mode: ``"5"`` is not a number, ``true`` is not a price, a
timestamp must be an ISO 8601 string WITH a timezone, ``NaN``/``Infinity`` are refused and
unknown keys are an error. Every failure becomes :class:`RequestError` with the offending
field written as a path (``candles[3].close``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

#: hard bounds that keep the arithmetic (and pandas' nanosecond timestamps) safe
MIN_PRICE, MAX_PRICE, MAX_VOLUME = 1e-12, 1e12, 1e18
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
#: schema-level cap on candles per request; the service's own ``max_candles`` is lower
SCHEMA_MAX_CANDLES = 100_000

EXCHANGE_PATTERN = r"^[a-z0-9_]{1,32}$"
SYMBOL_PATTERN = r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?$"
TIMEFRAME_PATTERN = r"^[1-9][0-9]{0,3}[smhdw]$"

Action = Literal["long", "short", "flat"]
Status = Literal["ok", "stale"]


class RequestError(Exception):
    """A client error: HTTP ``status`` (4xx) and the body ``{"error": message, "field": field}``.

    Also used for the few server-side refusals (503 while the model loads), always with the
    same body shape.
    """

    def __init__(self, status: int, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}

    def __repr__(self) -> str:
        return f"RequestError({self.status}, {self.message!r}, field={self.field!r})"


class FieldError(ValueError):
    """Raised inside validators: ``path`` is relative to the validated object's location."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("candles", 3, "close")`` -> ``candles[3].close``; the empty path is ``body``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def request_error(err: ValidationError) -> RequestError:
    """The first pydantic error as a :class:`RequestError` naming its field.

    Malformed JSON is a 400; everything else (wrong type, missing or unknown key, out of range,
    inconsistent candles) is a 422.
    """
    first = err.errors(include_url=False)[0]
    loc = tuple(first.get("loc", ()))
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        field = field_path((*loc, *cause.path))
        return RequestError(422, f"{field}: {cause.message}", field)
    field = field_path(loc)
    if first["type"] == "json_invalid":
        return RequestError(400, f"request body is not valid JSON: {first['msg']}", "body")
    if first["type"] == "model_type":
        return RequestError(422, "request body must be a JSON object", "body")
    return RequestError(422, f"{field}: {first['msg']}", field)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class SeriesRequest(_Strict):
    """One candle series: the body of ``POST /signal``."""

    exchange: str = Field(
        pattern=EXCHANGE_PATTERN, description="ccxt exchange id", examples=["bitfinex"]
    )
    symbol: str = Field(
        pattern=SYMBOL_PATTERN, description="ccxt unified symbol", examples=["BTC/USD"]
    )
    timeframe: str = Field(
        pattern=TIMEFRAME_PATTERN, description="ccxt timeframe", examples=["30m"]
    )
    position: float = Field(
        default=0.0, ge=-1.0, le=1.0,
        description="the caller's position (signed fraction of equity, a working order's goal "
        "included): the policy's hysteresis and minimum hold depend on it")
    bars_held: int = Field(default=0, ge=0, le=10_000_000,
                           description="bars since the position was opened (0 when flat)")

    @property
    def series_id(self) -> str:
        """The Feast entity key ``exchange:SYMBOL:timeframe``."""
        return f"{self.exchange}:{self.symbol}:{self.timeframe}"


class Candle(_Strict):
    """One CLOSED candle; ``timestamp`` is its OPEN time (ISO 8601 with a timezone, UTC
    preferred)."""

    timestamp: AwareDatetime = Field(examples=["2019-09-30T23:30:00Z"])
    open: float = Field(ge=MIN_PRICE, le=MAX_PRICE)
    high: float = Field(ge=MIN_PRICE, le=MAX_PRICE)
    low: float = Field(ge=MIN_PRICE, le=MAX_PRICE)
    close: float = Field(ge=MIN_PRICE, le=MAX_PRICE)
    volume: float = Field(ge=0.0, le=MAX_VOLUME)

    @field_validator("timestamp")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        if not MIN_TIME <= value <= MAX_TIME:
            raise ValueError(f"must lie between {MIN_TIME:%Y-%m-%d} and {MAX_TIME:%Y-%m-%d}")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> Candle:
        if self.high < max(self.open, self.close, self.low):
            raise FieldError(("high",), f"high {self.high} is below open, close or low")
        if self.low > min(self.open, self.close):
            raise FieldError(("low",), f"low {self.low} is above open or close")
        return self


class PredictRequest(SeriesRequest):
    """The body of ``POST /predict``: recent closed candles of one series, oldest first."""

    candles: list[Candle] = Field(min_length=1, max_length=SCHEMA_MAX_CANDLES)

    @field_validator("candles")
    @classmethod
    def _strictly_increasing(cls, candles: list[Candle]) -> list[Candle]:
        for i in range(1, len(candles)):
            prev, cur = candles[i - 1].timestamp, candles[i].timestamp
            if cur <= prev:
                what = "duplicates" if cur == prev else "is before"
                raise FieldError(
                    (i, "timestamp"),
                    f"{cur.isoformat()} {what} candles[{i - 1}].timestamp {prev.isoformat()}; "
                    "candles must be sorted oldest first with unique timestamps",
                )
        return candles


class HorizonForecast(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prob_up: float = Field(description="calibrated P(the log return over the horizon > 0)")
    expected_return: float = Field(description="forecast log return over the horizon")


class PolicyAnswer(BaseModel):
    """Why the policy chose the target (its inputs and thresholds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str = Field(description="enter_long | hold | exit | below_entry | min_hold | ... "
                        "| no_policy (the model carries none: flat)")
    edge: float | None = Field(description="the expected log return over the horizon")
    entry_threshold: float | None = Field(description="entry_margin x round-trip cost")
    exit_threshold: float | None = Field(description="exit_margin x round-trip cost")
    size: float | None = Field(description="the vol-targeted size the policy would hold")
    horizon: int | None
    label: str | None = Field(description="the policy configuration, in short")


class ExecutionAnswer(BaseModel):
    """How the trader works the order toward the target (bundled with the policy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry: Literal["market", "limit"]
    exit: Literal["market", "limit"]
    limit_offset_bps: float
    expire_bars: int
    on_expire: Literal["cancel", "market"]


class SignalResponse(BaseModel):
    """The answer of ``/signal`` and ``/predict`` (the trader's contract: keep it exact)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_position: float | None = Field(
        ge=-1.0, le=1.0, description="the policy's target: signed fraction of equity (null "
        "when stale: no forecast, no target; the caller keeps what it holds)")
    policy: PolicyAnswer | None = None
    execution: ExecutionAnswer | None = None
    forecasts: dict[str, HorizonForecast] | None = Field(
        default=None, description="per horizon in bars (keys like '4')")
    volatility: float | None = Field(
        default=None, description="forecast standard deviation of one bar's log return")

    status: Status = Field(description="'stale': features too old, no prediction was made")
    prob_up: float | None = Field(description="calibrated P(next candle closes up)")
    quantiles: dict[str, float] | None = Field(
        description="forecast quantiles of the next log return, keys like 'q0.1'"
    )
    confidence: float | None = Field(description="abs(prob_up - 0.5) * 2 unless the model says")
    disagreement: float | None = Field(description="std of the base models' P(up)")
    action: Action = Field(description="the sign of target_position")
    size_fraction: float = Field(ge=0.0, description="notional / equity the risk engine allows "
                                 "for the target (caps, halts of a fresh account)")
    stop_price: float | None
    take_profit: float | None
    model_version: str
    feature_timestamp: datetime | None = Field(
        description="event time of the features used: the last candle's CLOSE time (UTC)"
    )


class MetadataResponse(BaseModel):
    """Lineage of the model being served (``POST``/``GET /metadata``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    ready: bool
    model_version: str | None
    model_name: str | None
    model_uri: str
    resolved_model_uri: str | None
    model_source: str | None = Field(description="primary | fallback | bundled | local")
    fallback_reason: str | None
    mlflow_run_id: str | None
    training_data_version: str | None
    feature_service: str | None
    params_hash: str | None
    git_commit: str | None
    flavor: str | None
    window_rows: int | None
    features: list[str]
    max_feature_age_bars: float
    policy: dict[str, Any] | None = Field(
        default=None, description="the decision policy served with the model (PolicyConfig)")
    costs: dict[str, Any] | None = Field(
        default=None, description="the cost model the policy was chosen under")
    accelerated_models: list[str] = Field(
        default_factory=list,
        description="ensemble members prepared for one-row calls (e.g. a traced network)")
    load_error: str | None
    portfolio: dict[str, Any] | None = Field(
        default=None, description="the book's model of /portfolio: version, universe, "
        "construction, or why it is not loaded")



class PortfolioPosition(_Strict):
    """What the caller holds in one coin of the book."""

    weight: float = Field(ge=-10.0, le=10.0, description="signed fraction of the book's equity "
                          "(a working order's goal included)")
    bars_held: int = Field(default=0, ge=0, le=10_000_000,
                           description="bars since the position was opened (0 when flat)")


Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]


class PortfolioRequest(_Strict):
    """The body of ``POST /portfolio``: recent closed candles of every coin of the universe
    (oldest first; a coin may be missing or end earlier: it is not traded at this bar) and
    the book held."""

    exchange: str = Field(pattern=EXCHANGE_PATTERN, examples=["bitfinex"])
    timeframe: str = Field(pattern=TIMEFRAME_PATTERN, examples=["30m"])
    candles: dict[Symbol, list[Candle]] = Field(
        min_length=1, max_length=1000,
        description="per symbol (ccxt unified), its recent closed candles, oldest first")
    positions: dict[Symbol, PortfolioPosition] = Field(
        default_factory=dict, max_length=1000, description="the book held, per symbol")

    @field_validator("candles")
    @classmethod
    def _per_symbol(cls, candles: dict[str, list[Candle]]) -> dict[str, list[Candle]]:
        total = 0
        for symbol, rows in candles.items():
            if not rows:
                raise FieldError((symbol,), "needs at least one candle")
            total += len(rows)
            for i in range(1, len(rows)):
                prev, cur = rows[i - 1].timestamp, rows[i].timestamp
                if cur <= prev:
                    raise FieldError((symbol, i, "timestamp"),
                                     f"{cur.isoformat()} is not after {prev.isoformat()}; "
                                     "candles must be sorted oldest first with unique timestamps")
        if total > SCHEMA_MAX_CANDLES:
            raise FieldError((), f"at most {SCHEMA_MAX_CANDLES} candles in all, got {total}")
        return candles


class CoinAnswer(BaseModel):
    """One coin of the book's answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: float = Field(description="the target weight (signed fraction of equity)")
    current: float = Field(description="the weight the caller reported")
    action: str = Field(description="long | short | hold | drop | frozen (held, cannot be "
                        "traded now) | flat")
    tradable: bool = Field(description="has a bar at the decision time and a forecast")
    detail: str = Field(description="why a coin is not tradable ('' when it is)")
    expected_return: float | None = Field(description="forecast log return over the "
                                          "portfolio's horizon, relative to the basket")
    volatility: float | None = Field(description="forecast std of one bar's log return")
    beta: float | None = Field(description="beta to the basket (the cross-section)")
    correlation: float | None = Field(description="correlation with the basket")


class PortfolioResponse(BaseModel):
    """The answer of ``/portfolio``: the constructor's target weights for the whole universe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status = Field(description="'stale': the candles are too old, nothing decided")
    weights: dict[str, float] | None = Field(
        description="target weight per coin (null when stale: keep the book as it is)")
    reason: str = Field(description="initial | rebalance | hold | swap_below_cost | "
                        "not_rebalance_bar | no_forecast | stale")
    coins: dict[str, CoinAnswer]
    gross: float | None
    net: float | None
    beta: float | None
    volatility: float | None = Field(description="annualized volatility of the target book "
                                     "(null when nothing was decided)")
    expected_gain: float | None = Field(description="sum of (target - current) x expected "
                                        "return over the horizon")
    cost: float | None = Field(description="sum of |target - current| x side cost")
    horizon: int | None
    label: str | None = Field(description="the portfolio configuration, in short")
    portfolio: dict[str, Any] | None = Field(description="the PortfolioConfig served")
    execution: ExecutionAnswer | None
    universe: list[str]
    model_version: str
    feature_timestamp: datetime | None = Field(
        description="the decision bar's CLOSE time (UTC): the latest candle of the request")
