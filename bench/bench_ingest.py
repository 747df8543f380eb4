"""Ingest throughput: candles per second from a fake Binance on 127.0.0.1 into the CandleStore.

Run: ``python bench/bench_ingest.py``. Writes ``bench/results/ingest.json`` and prints a table.

Scenarios (20,000 one-minute candles, one symbol, real sync ccxt client, end to end including
Parquet upsert):

- ``candlecast ingest_ccxt``: our paging + retries + atomic commit;
- ``ccxt paginate + upsert`` (the alternative): ccxt's own ``fetch_ohlcv(params={'paginate':
  True})`` followed by one ``CandleStore.upsert`` (no resume, no retries with backoff, no
  open-candle filtering, no atomicity across series);

each at 1,000 and 100 candles per page with the rate limiter set to 1 ms (the fake needs no
politeness, so this measures our overhead), and ours once more with Binance's real ccxt rate limit
(``rateLimit`` 50 ms x klines weight 0.4 = one request per 20 ms) to show how much of the time the
rate limiter takes: little at 1,000 candles per page, most of it at 100.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fakes"))
import ccxt  # noqa: E402
from fake_binance import FakeBinance, FakeServer  # noqa: E402

from candlecast.data.ingest import ingest_ccxt, ingest_config  # noqa: E402
from candlecast.data.schema import SeriesId  # noqa: E402
from candlecast.data.store import CandleStore  # noqa: E402
from candlecast.exchange import create_exchange  # noqa: E402

N_CANDLES = 20_000
MINUTE_MS = 60_000
# The fake's history ends at the real clock: ccxt's own paginate plans its calls from the wall
# clock, so a history in the past would give it nothing to fetch.
LISTING_MS = (int(time.time() * 1000) // MINUTE_MS - N_CANDLES - 5) * MINUTE_MS
NOW_MS = LISTING_MS + N_CANDLES * MINUTE_MS + 30_000  # N closed candles + 1 open
NOW = pd.Timestamp(NOW_MS, unit="ms", tz="UTC")
SINCE = pd.Timestamp(LISTING_MS, unit="ms", tz="UTC")
SERIES = SeriesId("binance", "BTC/USDT", "1m")
DEFAULT_RL = "ccxt default (binance spot klines: 50 x 0.4 = 20)"


def run_ours(url: str, page: int, rate_limit_ms: int | None) -> tuple[float, int, int]:
    config = ingest_config(
        exchange="binance",
        symbols=["BTC/USDT"],
        timeframe="1m",
        since=SINCE.isoformat(),
        page_limit=page,
        rate_limit_ms=rate_limit_ms,
    )
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        report = ingest_ccxt(config, CandleStore(root), api_url=url, now=NOW)
        elapsed = time.perf_counter() - start
    return elapsed, report.fetched, report.pages


def run_ccxt_paginate(url: str, page: int) -> tuple[float, int, int]:
    exchange = create_exchange("binance", rate_limit_ms=1, api_url=url)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        exchange.load_markets()
        rows = exchange.fetch_ohlcv(
            "BTC/USDT",
            "1m",
            LISTING_MS,
            None,
            {
                "paginate": True,
                "until": NOW_MS - MINUTE_MS - 1,
                "maxEntriesPerRequest": page,
                "paginationCalls": N_CANDLES // page + 2,
            },
        )
        frame = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
        frame["exchange"], frame["symbol"], frame["timeframe"] = "binance", "BTC/USDT", "1m"
        CandleStore(root).upsert(SERIES, frame)
        elapsed = time.perf_counter() - start
    return elapsed, len(rows), N_CANDLES // page + 1


def _serve(urls: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    fake = FakeBinance(now_ms=NOW_MS, listing_ms=LISTING_MS, max_limit=1000)
    with FakeServer(fake) as server:
        urls.put(server.url)
        stop.wait()


def main() -> None:
    # The fake runs in its own process so it does not compete with the client for the GIL.
    context = multiprocessing.get_context("fork")
    urls, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(urls, stop), daemon=True)
    process.start()
    url = urls.get(timeout=30)
    results = []
    try:
        cases = [
            ("candlecast ingest_ccxt", 1000, 1, lambda: run_ours(url, 1000, 1)),
            ("ccxt paginate + upsert", 1000, 1, lambda: run_ccxt_paginate(url, 1000)),
            ("candlecast ingest_ccxt", 100, 1, lambda: run_ours(url, 100, 1)),
            ("ccxt paginate + upsert", 100, 1, lambda: run_ccxt_paginate(url, 100)),
            ("candlecast ingest_ccxt", 1000, None, lambda: run_ours(url, 1000, None)),
            ("candlecast ingest_ccxt", 100, None, lambda: run_ours(url, 100, None)),
        ]
        run_ours(url, 1000, 1)  # warm-up: imports, connection pool, page cache
        for name, page, rate_limit, fn in cases:
            repeats = 3 if rate_limit == 1 else 1
            timings = []
            for _ in range(repeats):
                elapsed, candles, pages = fn()
                timings.append(elapsed)
            best = min(timings)
            results.append(
                {
                    "method": name,
                    "page_limit": page,
                    "rate_limit_ms": rate_limit if rate_limit is not None else DEFAULT_RL,
                    "candles": candles,
                    "pages": pages,
                    "seconds": round(best, 4),
                    "candles_per_s": round(candles / best, 1),
                }
            )
    finally:
        stop.set()
        process.join(10)
    by_key = {(r["method"], r["page_limit"], r["rate_limit_ms"]): r for r in results}
    ratios = {
        f"ours_vs_ccxt_paginate_page{p}": round(
            by_key[("candlecast ingest_ccxt", p, 1)]["candles_per_s"]
            / by_key[("ccxt paginate + upsert", p, 1)]["candles_per_s"],
            3,
        )
        for p in (1000, 100)
    }
    for p in (1000, 100):
        ratios[f"rate_limited_vs_unthrottled_page{p}"] = round(
            by_key[("candlecast ingest_ccxt", p, DEFAULT_RL)]["candles_per_s"]
            / by_key[("candlecast ingest_ccxt", p, 1)]["candles_per_s"],
            3,
        )
    payload = {
        "benchmark": "ingest",
        "candles": N_CANDLES,
        "timeframe": "1m",
        "ccxt": ccxt.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
        "ratios": ratios,
    }
    out = HERE / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")

    print("| method | page | rateLimit ms | candles | pages | s | candles/s |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['method']} | {r['page_limit']} | {r['rate_limit_ms']} | {r['candles']} | "
            f"{r['pages']} | {r['seconds']:.3f} | {r['candles_per_s']:,.0f} |"
        )
    for key, value in ratios.items():
        print(f"{key}: {value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
