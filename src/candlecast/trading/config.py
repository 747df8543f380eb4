"""Frozen trader configuration (the ``trade:`` section of ``params.yaml``).

Risk, costs and the target-to-order rules are NOT repeated here: the trader takes the same
``RiskConfig``, ``CostConfig`` and ``BacktestConfig`` (``initial_equity``, ``allow_short``)
objects the backtester takes, so both read one definition; the policy and its execution style
come with each answer of the signal service (versioned with the model).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from candlecast.data.schema import SeriesId, timeframe_to_timedelta


class StreamConfig(BaseModel):
    """The WebSocket feed (``trade.feed: stream``; ``trade.stream`` in params.yaml). Times are
    seconds of the exchange's clock (wall time in production). See docs/trading.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["auto", "ohlcv", "trades"] = Field(
        default="auto", description="`ohlcv`: the exchange's candle stream (watch_ohlcv); "
        "`trades`: candles built from its trade stream (watch_trades); `auto`: candles when "
        "the exchange streams them, else trades.")
    close_grace_s: float = Field(
        default=2.0, ge=0, le=86_400, description="Hand a candle on this long after its close "
        "when the stream has not moved to a later candle yet.")
    silence_s: float = Field(
        default=30.0, gt=0, le=86_400, description="No message for this long: the data is "
        "stale (the trader opens nothing) and the connection is replaced.")
    reconnect_base_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=600)
    backfill_retries: int = Field(default=3, ge=0, le=20)
    backfill_backoff_s: float = Field(default=0.5, gt=0, le=60)
    backfill_backoff_max_s: float = Field(default=10.0, gt=0, le=600)
    backfill_give_up_s: float = Field(
        default=900.0, gt=0, description="A missing candle the REST API cannot provide for "
        "this long after its close becomes a gap, so later candles are traded.")
    ws_url: str | None = Field(default=None, description="Re-point the WebSocket URLs "
                               "(tests, proxies), e.g. ws://127.0.0.1:9000.")
    candle_store: str | None = Field(
        default="data/raw", description="CandleStore the traded candles are appended to (the "
        "ingest stage's output, so `dvc repro` trains on them); null: not stored.")
    store_flush_s: float = Field(default=5.0, gt=0, le=3600,
                                 description="Append to the candle store at most this often.")
    watchdog_interval_s: float = Field(
        default=0.5, gt=0, le=60, description="Wall seconds between the checks for silence and "
        "for candles due by the grace.")

    @model_validator(mode="after")
    def _consistent(self) -> StreamConfig:
        if self.reconnect_max_s < self.reconnect_base_s:
            raise ValueError("trade.stream.reconnect_max_s must be >= reconnect_base_s")
        if self.backfill_backoff_max_s < self.backfill_backoff_s:
            raise ValueError("trade.stream.backfill_backoff_max_s must be >= backfill_backoff_s")
        if self.ws_url is not None and not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError(f"trade.stream.ws_url must be a ws(s) URL, got {self.ws_url!r}")
        return self


class TradeConfig(BaseModel):
    """How the trader runs. Paper mode is the default; ``live`` needs ``live_confirmed`` too
    (and credentials from the environment, which are never part of any config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["paper", "live"] = "paper"
    live_confirmed: bool = Field(
        default=False, description="Second, explicit opt-in for live orders (besides --live)."
    )
    strategy_id: str = Field(
        default="candlecast", pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Namespace of the deterministic client order ids.",
    )
    exchange: str = "bitfinex"
    symbols: tuple[str, ...] = ("BTC/USD",)
    timeframe: str = "30m"

    # ---- signal service ------------------------------------------------------------------
    decision: Literal["policy", "portfolio"] = Field(
        default="policy",
        description="`policy`: each symbol's target from /signal or /predict (one series); "
        "`portfolio`: ONE /portfolio answer per candle gives the whole book's target weights "
        "(the symbols are one account: docs/portfolio.md); it sends `predict_candles` recent "
        "candles of every symbol")
    service_url: str = "http://127.0.0.1:3000"
    signal_endpoint: Literal["signal", "predict"] = Field(
        default="signal",
        description="`signal`: the service reads the features the trader wrote to Feast; "
        "`predict`: the trader sends its recent candles (stateless).",
    )
    predict_candles: int = Field(default=300, ge=2, le=10_000)
    service_timeout_s: float = Field(default=2.0, gt=0, le=60)
    signal_retries: int = Field(default=2, ge=0, le=10)
    signal_backoff_s: float = Field(default=0.25, gt=0, le=60)
    signal_backoff_max_s: float = Field(default=2.0, gt=0, le=600)
    max_signal_lag_s: float = Field(
        default=0.0, ge=0,
        description="A signal is fresh when its feature_timestamp is at most this much older "
        "than the close of the candle just processed (0: exactly that candle).",
    )

    # ---- features / Feast ----------------------------------------------------------------
    write_features: bool = Field(default=True, description="Write each candle's features to "
                                 "the Feast online store (feature view candle_features).")
    feast_repo: str = "feature_repo"
    #: the repo's config file; params.yaml's ``feature_store.repo_config`` (one truth)
    feast_config: str = "feature_store.yaml"

    # ---- state and operations ------------------------------------------------------------
    state_db: str = "data/trading/state.db"
    state_sync: Literal["FULL", "NORMAL"] = Field(
        default="FULL", description="SQLite synchronous mode: FULL survives power loss, NORMAL "
        "only a killed process (no fsync per candle; fine for paper replays).")
    kill_switch_file: str = "data/trading/KILL"
    pause_file: str = "data/trading/PAUSE"
    flatten_on_kill: bool = Field(
        default=True, description="On kill: close positions (else only cancel orders and halt)."
    )
    replay_store: str = Field(default="data/validated",
                              description="CandleStore root replayed by --replay.")
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    feed: Literal["poll", "stream"] = Field(
        default="poll", description="Live candles: `poll` the REST API after each close, or "
        "`stream` them over the exchange's WebSocket (trade.stream).")
    stream: StreamConfig = Field(default_factory=StreamConfig)
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve Prometheus metrics on this port "
        "(0: any free port; null: off).")
    metrics_host: str = "127.0.0.1"
    candle_close_delay_s: float = Field(
        default=2.0, ge=0, le=300,
        description="Live feed: wait this long after a candle's close before fetching it.",
    )

    # ---- live exchange -------------------------------------------------------------------
    api_key_env: str = "CANDLECAST_API_KEY"
    api_secret_env: str = "CANDLECAST_API_SECRET"  # noqa: S105 - a variable name, not a secret
    exchange_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    exchange_rate_limit_ms: int | None = Field(default=None, ge=0)
    exchange_api_url: str | None = Field(default=None,
                                         description="Re-point REST URLs (tests, proxies).")
    exchange_options: dict[str, Any] = Field(default_factory=dict)
    order_retries: int = Field(default=3, ge=0, le=20)
    order_backoff_s: float = Field(default=0.5, gt=0, le=60)
    order_backoff_max_s: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _consistent(self) -> TradeConfig:
        timeframe_to_timedelta(self.timeframe)
        if not self.symbols:
            raise ValueError("trade.symbols must name at least one symbol")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"trade.symbols has duplicates: {list(self.symbols)}")
        for symbol in self.symbols:
            SeriesId(self.exchange, symbol, self.timeframe)
        if self.signal_backoff_max_s < self.signal_backoff_s:
            raise ValueError("trade.signal_backoff_max_s must be >= signal_backoff_s")
        if self.order_backoff_max_s < self.order_backoff_s:
            raise ValueError("trade.order_backoff_max_s must be >= order_backoff_s")
        if not self.service_url.startswith(("http://", "https://")):
            raise ValueError(f"trade.service_url must be an http(s) URL, got {self.service_url!r}")
        return self

    @property
    def series(self) -> list[SeriesId]:
        return [SeriesId(self.exchange, s, self.timeframe) for s in self.symbols]

    @property
    def is_live(self) -> bool:
        return self.mode == "live"

    def check_live_allowed(self) -> None:
        """Raise unless live trading was explicitly confirmed (the flag alone is not enough)."""
        if self.is_live and not self.live_confirmed:
            raise ValueError(
                "live trading needs an explicit confirmation: pass --i-understand-live-trading "
                "or set trade.live_confirmed: true"
            )
