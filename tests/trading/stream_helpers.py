"""Builders for the streaming-feed tests (imported, not collected): the bundled Bitfinex candles
re-listed on the fake Binance (REST + WebSocket), a streaming trader on the real ccxt.pro client,
and a scripted signal service for several series."""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_binance import serve
from fake_binance_orders import CCXT_SPOT_OPTIONS
from fake_binance_ws import (
    FakeBinanceStream,
    FakeClock,
    ReplayedBinance,
    StreamFault,
    binance_tables,
)
from trading_helpers import MemorySink, PolicyScript, make_script, replay_slice

from candlecast.data.sample import load_sample
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.exchange import CcxtOhlcvSource
from candlecast.exchange.ccxt_stream import CcxtStreamSource
from candlecast.features import FeatureConfig
from candlecast.trading import Signal, SignalUnavailable, parse_signal
from candlecast.trading.candles import Bar
from candlecast.trading.config import StreamConfig
from candlecast.trading.stream import StreamFeed

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTC/USD", "ETH/USD")
MARKETS = {"BTCUSD": ("BTC", "USD"), "ETHUSD": ("ETH", "USD")}
STEP_MS = 1_800_000
STEP_NS = STEP_MS * 1_000_000


def bundled(symbols: tuple[str, ...] = SYMBOLS) -> dict[str, pd.DataFrame]:
    """The bundled Bitfinex 30m candles of ``symbols``, re-labelled as the fake Binance's."""
    out = {}
    for symbol in symbols:
        frame = load_sample(REPO / "data" / "sample", "bitfinex_30m", symbol)
        frame["exchange"] = "binance"
        out[symbol] = frame
    return out


def market(symbol: str) -> str:
    return symbol.replace("/", "")


class SeriesSignals:
    """An in-process signal service for several series: like ``/signal`` it answers for the
    latest features the trader wrote, the policy target of that series' script (the same
    :class:`~candlecast.policy.Policy` as the backtester's) for the position the trader
    reports. ``down``: (series key, candle open) pairs for which the service is unreachable."""

    def __init__(self, sink: MemorySink, scripts: Mapping[str, PolicyScript]) -> None:
        self.sink, self.scripts = sink, dict(scripts)
        self.down: set[tuple[str, int]] = set()
        self.calls = 0

    def signal(self, series: SeriesId, position: float = 0.0, bars_held: int = 0) -> Signal:
        close, _ = self.sink.latest[series.key]
        step = int(series.step.value)
        open_ns = int(close.value) - step
        self.calls += 1
        if (series.key, open_ns) in self.down:
            raise SignalUnavailable("connection", "service down (scripted)")
        return parse_signal(self.scripts[series.key].answer(open_ns, step, position, bars_held))

    def predict(self, series: SeriesId, candles: list[Bar], position: float = 0.0,
                bars_held: int = 0) -> Signal:  # pragma: no cover - the tests use signal
        raise NotImplementedError

    def ready(self) -> bool:
        return True


#: a policy that trades the bundled window often (as the trader's outage tests use)
POLICY = {"horizon": 4, "entry_margin": 1.0, "exit_margin": 0.0, "min_hold_bars": 2,
          "vol_target": 0.5, "allow_short": True}


def series_scripts(frames: Mapping[str, pd.DataFrame], first: pd.Timestamp, end: pd.Timestamp,
                   exchange: str = "binance", timeframe: str = "30m") -> dict[str, PolicyScript]:
    """Per series key, the policy on a noisy forecast of its candles in ``[first, end)``."""
    out = {}
    for symbol, frame in frames.items():
        ts = frame["timestamp"]
        start = int(ts.searchsorted(first))
        n = int(ts.searchsorted(end)) - start
        _, replay, feats = replay_slice(frame, start, n, FeatureConfig())
        out[SeriesId(exchange, symbol, timeframe).key] = make_script(replay, feats, frame,
                                                                     start, **POLICY)
    return out


@dataclass
class FakeExchange:
    """A running fake Binance (REST + WebSocket) replaying ``frames`` from ``first`` on."""

    rest_fake: ReplayedBinance
    rest_url: str
    ws: FakeBinanceStream
    clock: FakeClock
    first_ms: int
    n: int

    def rest_source(self) -> CcxtOhlcvSource:
        return CcxtOhlcvSource.create("binance", timeout_ms=2000, rate_limit_ms=1,
                                      api_url=self.rest_url, options=CCXT_SPOT_OPTIONS)

    def connect(self) -> functools.partial[CcxtStreamSource]:
        return functools.partial(CcxtStreamSource.create, "binance", api_url=self.rest_url,
                                 ws_url=self.ws.url, options=CCXT_SPOT_OPTIONS)

    def expected(self, symbol: str) -> list[Bar]:
        """The streamed window's candles, as stored (no revision)."""
        return [Bar(r[0] * 1_000_000, *map(float, r[1:])) for r in self.ws.candles(market(symbol))]

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ws.subscriptions and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ws.subscriptions, "the client never subscribed"


class running_exchange:  # noqa: N801 - a context manager used like a function
    """``with running_exchange(frames, first, n, faults, candle_wall_s) as ex:`` (REST + WS)."""

    def __init__(self, frames: Mapping[str, pd.DataFrame], first: pd.Timestamp, n: int,
                 faults: list[StreamFault] | None = None, candle_wall_s: float = 0.05,
                 start_in_candle: float = 0.01) -> None:
        self.tables = binance_tables({market(s): f for s, f in frames.items()})
        self.first_ms = int(first.value // 1_000_000)
        self.n, self.faults = n, faults or []
        self.clock = FakeClock(self.first_ms / 1000 + start_in_candle * STEP_MS / 1000,
                               speed=STEP_MS / 1000 / candle_wall_s)
        self._stack: list[Any] = []

    def __enter__(self) -> FakeExchange:
        rest_fake = ReplayedBinance(now_ms=self.first_ms, markets=dict(MARKETS), max_limit=1000,
                                    tables=self.tables, clock=self.clock)
        server = serve(rest_fake).__enter__()
        self._stack.append(server)
        ws = FakeBinanceStream(self.tables, self.first_ms, self.n, "30m", self.clock, rest_fake,
                               self.faults).start()
        self._stack.append(ws)
        return FakeExchange(rest_fake, server.url, ws, self.clock, self.first_ms, self.n)

    def __exit__(self, *exc: object) -> None:
        ws, server = self._stack[1], self._stack[0]
        ws.stop()
        server.__exit__(None, None, None)


def stream_config(kind: str, **overrides: Any) -> StreamConfig:
    """Settings in the fake exchange's time for 0.05 wall seconds per candle: grace 0.8 candle
    (40 ms: the next open closes a candle long before), silent after 4 candles without a
    message, fast reconnects and backfill retries."""
    fields: dict[str, Any] = {
        "kind": kind, "close_grace_s": 0.8 * STEP_MS / 1000, "silence_s": 4 * STEP_MS / 1000,
        "reconnect_base_s": 0.02, "reconnect_max_s": 0.2, "backfill_backoff_s": 0.005,
        "backfill_backoff_max_s": 0.02, "backfill_give_up_s": 40 * STEP_MS / 1000,
        "watchdog_interval_s": 0.005, "store_flush_s": 0.2, "candle_store": None,
    }
    fields.update(overrides)
    return StreamConfig(**fields)


def stream_feed(ex: FakeExchange, config: StreamConfig, store: CandleStore | None = None,
                symbols: tuple[str, ...] = SYMBOLS) -> StreamFeed:
    series = [SeriesId("binance", s, "30m") for s in symbols]
    return StreamFeed(ex.rest_source(), series, config, connect=ex.connect(), store=store,
                      clock=ex.clock)


def guard(seconds: float, stop: Any) -> threading.Timer:
    """Set ``stop`` after ``seconds`` (a hung test ends with a clear failure instead)."""
    timer = threading.Timer(seconds, stop.set, args=("test timeout",))
    timer.daemon = True
    timer.start()
    return timer
