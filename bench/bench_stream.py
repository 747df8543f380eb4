"""Streaming feed: candle-to-order latency beside the REST polling feed, and message throughput.

Run: ``python bench/bench_stream.py`` (``--quick``: fewer candles). Writes
``bench/results/stream.json`` and prints a table. The fake Binance (REST + WebSocket,
``tests/fakes/fake_binance_ws.py``) runs in its own process (no GIL shared with the client);
the client is the real ccxt / ccxt.pro.

1. **Latency**: real Bitfinex BTC/USD 30m candles replayed as trades (first trade 5 ms after
   the open, the last 10 ms before the close) on a clock that runs at wall speed around every
   close and jumps over the quiet middle of each candle (after holding the close for a few
   seconds, so both feeds see the close in real time). A paper trader (a scripted policy whose
   target flips every candle, so every tick commits a new working order, with the risk engine
   without trade limits; SQLite ``synchronous=FULL``)
   runs on the streaming feed (trades stream, ``close_grace_s`` 0.25 s) and then on the REST
   polling feed with its defaults (``candle_close_delay_s`` 2 s, ``poll_interval_s`` 1 s).
   Measured per candle: wall time from the fake sending the candle's last trade to the trader
   having committed the tick (its new working order). p50/p99 and the ratio poll/stream.
2. **Throughput**: 50 symbols on one connection (``watch_trades_for_symbols``), trades offered
   at a fixed rate (bursts of one trade per symbol), 1,000 to 20,000 a second; read by (a) the
   streaming feed (ccxt.pro parsing, cache reads, candle building: ``feed``) and (b) a bare
   ccxt.pro loop that only reads ccxt's caches (``bare``, the alternative: what ccxt costs
   alone). Where the offered rate exceeds what a reader takes, it reads at its maximum: the
   best read rate of each is its throughput; their ratio is our overhead.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fakes"))
sys.path.insert(0, str(HERE.parent / "tests" / "trading"))
import ccxt  # noqa: E402
from fake_binance import serve  # noqa: E402
from fake_binance_orders import CCXT_SPOT_OPTIONS  # noqa: E402
from fake_binance_ws import (  # noqa: E402
    FakeBinanceStream,
    FakeClock,
    ReplayedBinance,
    binance_tables,
)

from candlecast.data.sample import load_sample  # noqa: E402
from candlecast.data.schema import SeriesId  # noqa: E402

STEP_MS = 1_800_000
STEP_S = STEP_MS / 1000
OFFSETS = (0.005 / STEP_S, 0.3, 0.6, 1 - 0.010 / STEP_S)  # first 5 ms in, last 10 ms before close


class SharedClock:
    """Wall time plus an offset shared between processes (the player advances it)."""

    speed = 1.0

    def __init__(self) -> None:
        self.offset = multiprocessing.get_context("fork").Value("d", 0.0)

    def __call__(self) -> float:
        return time.time() + self.offset.value

    def run(self) -> None:
        return

    def now_ms(self) -> int:
        return int(self() * 1000)

    def advance(self, seconds: float) -> None:
        with self.offset.get_lock():
            self.offset.value += seconds

    def wall_delay(self, at_s: float) -> float:
        return max(0.0, at_s - self())


def _exchange_process(tables, markets, first_ms, n, clock, hold_s, urls, go, results, stop,
                      offsets) -> None:
    rest_fake = ReplayedBinance(now_ms=first_ms, markets=markets, max_limit=1000, tables=tables,
                                clock=clock)  # type: ignore[arg-type]
    with serve(rest_fake) as rest:
        ws = FakeBinanceStream(tables, first_ms, n, "30m", clock, rest_fake,  # type: ignore[arg-type]
                               trade_offsets=offsets, hold_s=hold_s).start()
        urls.put((rest.url, ws.url))
        go.wait()
        started = time.time()
        ws.play()
        ws.done.wait(3600)
        results.put({"sent": dict(ws.sent), "last_trade_sent": {
            f"{m}:{t}": v for (m, t), v in ws.last_trade_sent.items()},
            "play_s": time.time() - started, "connections": ws.connections_opened})
        stop.wait(3600)
        ws.stop()


class Exchange:
    """The fake in a child process; ``start()`` replays, ``result()`` what it sent."""

    def __init__(self, tables, markets, first_ms, n, clock, hold_s, offsets=OFFSETS) -> None:
        ctx = multiprocessing.get_context("fork")
        self.urls, self.results = ctx.Queue(), ctx.Queue()
        self.go, self.stop = ctx.Event(), ctx.Event()
        self.process = ctx.Process(target=_exchange_process, daemon=True, args=(
            tables, markets, first_ms, n, clock, hold_s, self.urls, self.go, self.results,
            self.stop, offsets))
        self.process.start()
        self.rest_url, self.ws_url = self.urls.get(timeout=60)

    def start(self) -> None:
        self.go.set()

    def result(self, timeout: float = 3600) -> dict[str, Any]:
        return self.results.get(timeout=timeout)

    def close(self) -> None:
        self.stop.set()
        self.process.join(20)


def _rest(url: str):
    from candlecast.exchange import CcxtOhlcvSource

    return CcxtOhlcvSource.create("binance", timeout_ms=5000, rate_limit_ms=1, api_url=url,
                                  options=CCXT_SPOT_OPTIONS)


# ----------------------------------------------------------------------------------- latency
def _latency_run(feed_kind: str, frame: pd.DataFrame, n: int, hold_s: float,
                 workdir: Path) -> dict[str, Any]:
    from trading_helpers import MemorySink, PolicyScript, ScriptedSignals

    from candlecast.backtest import BacktestConfig, CostConfig
    from candlecast.exchange.ccxt_stream import CcxtStreamSource
    from candlecast.policy import Policy, PolicyConfig
    from candlecast.risk import RiskConfig
    from candlecast.trading import CcxtFeed, PaperBroker, StateStore, TradeConfig, Trader
    from candlecast.trading.config import StreamConfig
    from candlecast.trading.stream import StreamFeed

    clock = SharedClock()
    first_ms = (int(time.time() * 1000) // STEP_MS + 1) * STEP_MS + 0  # the next 30m boundary
    history = 800
    table = frame.iloc[:history + n + 1].copy()
    table["timestamp"] = pd.to_datetime(first_ms - history * STEP_MS + STEP_MS * np.arange(
        len(table)), unit="ms", utc=True)
    # the replay starts at the first streamed candle's open: the clock jumps there
    clock.advance(first_ms / 1000 - time.time() - 0.5)
    tables = binance_tables({"BTCUSD": table})
    ex = Exchange(tables, {"BTCUSD": ("BTC", "USD")}, first_ms, n, clock, hold_s)
    cfg = TradeConfig(exchange="binance", symbols=("BTC/USD",), timeframe="30m",
                      state_db=str(workdir / f"{feed_kind}.db"),
                      kill_switch_file=str(workdir / "KILL"), pause_file=str(workdir / "P"),
                      signal_retries=0, feed="stream" if feed_kind == "stream" else "poll")
    if feed_kind == "stream":
        # the clock jumps over the quiet middle of each candle: silence is judged in exchange
        # time, so it must exceed the jumps here
        stream_cfg = StreamConfig(kind="trades", close_grace_s=0.25, silence_s=3 * STEP_S,
                                  watchdog_interval_s=0.05, candle_store=None)
        connect = functools.partial(CcxtStreamSource.create, "binance", api_url=ex.rest_url,
                                    ws_url=ex.ws_url, options=CCXT_SPOT_OPTIONS)
        feed: Any = StreamFeed(_rest(ex.rest_url), cfg.series, stream_cfg, connect=connect,
                               clock=clock)
    else:
        feed = CcxtFeed(_rest(ex.rest_url), cfg.series, close_delay_s=cfg.candle_close_delay_s,
                        now=clock)
    sink = MemorySink()
    ts = pd.DatetimeIndex(table["timestamp"]).asi8.tolist()
    # a policy whose target flips between long and short every candle: every tick decides
    policy = Policy(PolicyConfig(horizon=1, entry_margin=1.0, min_hold_bars=0, vol_target=None,
                                 allow_short=True), CostConfig(), 17_520.0)
    script = PolicyScript(policy, ts, [0.02 if i % 2 else -0.02 for i in range(len(ts))],
                          [0.001] * len(ts))
    signals = ScriptedSignals(sink, STEP_MS * 1_000_000, script)
    trader = Trader(cfg, broker=PaperBroker(CostConfig()), feed=feed, signals=signals,
                    store=StateStore(cfg.state_db), risk=RiskConfig.plain(0.5), costs=CostConfig(),
                    backtest=BacktestConfig(), feature_sink=sink)
    commits: list[tuple[int, float]] = []
    process_tick = trader.process_tick

    def timed(tick):  # the tick's transaction (its working order) is committed on return
        out = process_tick(tick)
        commits.append((tick.ts, time.time()))
        return out

    trader.process_tick = timed  # type: ignore[method-assign]
    if hasattr(feed, "start"):
        feed.start()
        time.sleep(1.0)  # subscribed before the first candle
    ex.start()
    guard = threading.Timer(n * (hold_s + 2) + 120, trader.stop.set)
    guard.daemon = True
    guard.start()
    summary = trader.run(max_ticks=n)
    guard.cancel()
    sent = ex.result()
    if hasattr(feed, "close"):
        feed.close()
    ex.close()
    orders = trader.store.frame("orders")
    trader.store.close()
    last = {int(k.split(":")[1]) * 1_000_000: v for k, v in sent["last_trade_sent"].items()}
    lat = np.array([done - last[t] for t, done in commits if t in last]) * 1000
    stats = feed.stats() if hasattr(feed, "stats") else {}
    with_order = set(orders["created_ts"])
    later = lat[1:]  # the stream joins the first candle mid-way and takes it from REST
    return {"feed": feed_kind, "candles": len(lat), "status": summary.status,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "first_ms": float(lat[0]),
            "p99_after_first_ms": float(np.percentile(later, 99)),
            "ticks_with_new_order": sum(t in with_order
                                                                    for t, _ in commits),
            "candles_stream": stats.get("candles_stream"),
            "candles_rest": stats.get("candles_rest")}


# -------------------------------------------------------------------------------- throughput
def _throughput(frame: pd.DataFrame, symbols: int, rate: float, seconds: float,
                mode: str) -> dict[str, Any]:
    """``rate`` trades per second offered (bursts of one trade per symbol), for ``seconds``."""
    import asyncio

    from candlecast.exchange.ccxt_stream import CcxtStreamSource
    from candlecast.trading.config import StreamConfig
    from candlecast.trading.stream import StreamFeed

    candle_wall_s = 4 * symbols / rate
    n = max(2, int(seconds / candle_wall_s))
    first_ms = int(pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000)
    table = frame.iloc[:n].copy()
    table["timestamp"] = pd.to_datetime(first_ms + STEP_MS * np.arange(n), unit="ms", utc=True)
    names = [f"C{i:02d}" for i in range(symbols)]
    markets = {f"{b}USD": (b, "USD") for b in names}
    tables = binance_tables({m: table for m in markets})
    clock = FakeClock(first_ms / 1000, speed=STEP_S / candle_wall_s)
    ex = Exchange(tables, markets, first_ms, n, clock, 0.0, offsets=(0.05, 0.3, 0.55, 0.8))
    unified = [f"{b}/USD" for b in names]
    total = 4 * n * symbols
    connect = functools.partial(CcxtStreamSource.create, "binance", api_url=ex.rest_url,
                                ws_url=ex.ws_url, options=CCXT_SPOT_OPTIONS)
    if mode == "feed":
        series = [SeriesId("binance", s, "30m") for s in unified]
        feed = StreamFeed(_rest(ex.rest_url), series, StreamConfig(
            kind="trades", watchdog_interval_s=0.5, silence_s=86_400, candle_store=None),
            connect=connect, clock=time.time)
        feed.start()
        time.sleep(1.5)
        ex.start()
        start = time.perf_counter()
        deadline = start + seconds + 10
        while time.perf_counter() < deadline and feed.stats().get("rows", 0) < total:
            time.sleep(0.002)
        end = time.perf_counter()
        read = feed.stats().get("rows", 0)
        feed.close()
    else:
        async def bare() -> tuple[float, float, int]:
            source = connect()
            await source.load_markets()
            count = 0
            task = asyncio.ensure_future(source.wait_trades(unified))
            await asyncio.sleep(1.5)
            ex.start()
            began = time.perf_counter()
            while count < total:
                done, _ = await asyncio.wait({task}, timeout=5)
                if not done:
                    break
                for s in unified:
                    count += len(source.trade_updates(s).rows)
                task = asyncio.ensure_future(source.wait_trades(unified))
            finished = time.perf_counter()
            task.cancel()
            await source.close()
            return began, finished, count

        start, end, read = asyncio.run(bare())
    sent = ex.result()
    ex.close()
    wall = end - start
    return {"reader": mode, "symbols": symbols, "offered_per_s": rate,
            "connections": sent["connections"], "trades_sent": total, "trades_read": read,
            "all_read": read >= total, "seconds": round(wall, 3),
            "read_per_s": round(read / wall, 1), "send_seconds": round(sent["play_s"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    frame = load_sample(HERE.parent / "data" / "sample", "bitfinex_30m", "BTC/USD").iloc[6000:]
    n_stream, n_poll = (40, 12) if args.quick else (200, 50)
    with tempfile.TemporaryDirectory() as tmp:
        latency = [_latency_run("stream", frame, n_stream, 1.0, Path(tmp)),
                   _latency_run("poll", frame, n_poll, 4.5, Path(tmp))]
    rates = (1000, 2500, 5000, 10000) if args.quick else (1000, 2500, 5000, 10000, 20000)
    throughput = [_throughput(frame, 50, rate, 3.0 if args.quick else 6.0, mode)
                  for rate in rates for mode in ("feed", "bare")]
    stream, poll = latency

    def best(mode: str) -> float:
        return max(r["read_per_s"] for r in throughput if r["reader"] == mode)

    ratios = {"poll_vs_stream_p50": round(poll["p50_ms"] / stream["p50_ms"], 1),
              "poll_vs_stream_p99": round(poll["p99_ms"] / stream["p99_ms"], 1),
              "feed_vs_bare_max_read_rate": round(best("feed") / best("bare"), 3),
              "feed_max_trades_per_s": best("feed"), "bare_max_trades_per_s": best("bare")}
    payload = {"benchmark": "stream", "ccxt": ccxt.__version__,
               "python": platform.python_version(), "machine": platform.machine(),
               "quick": args.quick, "latency": latency, "throughput": throughput,
               "ratios": ratios}
    out = HERE / "results" / "stream.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print("| feed | candles | p50 ms | p99 ms | p99 after the first ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in latency:
        print(f"| {r['feed']} | {r['candles']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['p99_after_first_ms']:.1f} | {r['max_ms']:.1f} |")
    print("\n| reader | symbols | offered/s | sent | read | all read | s | read/s |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in throughput:
        print(f"| {r['reader']} | {r['symbols']} | {r['offered_per_s']:,} | {r['trades_sent']} | "
              f"{r['trades_read']} | {r['all_read']} | {r['seconds']} | "
              f"{r['read_per_s']:,.0f} |")
    for key, value in ratios.items():
        print(f"{key}: {value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
