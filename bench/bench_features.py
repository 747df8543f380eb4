"""Feature benchmark: incremental engine throughput, our streaming indicators vs talipp, batch.

Run: ``python bench/bench_features.py`` (about a minute). Writes ``bench/results/features.json``
and prints a markdown table. All inputs are seeded synthetic candles; timings are the best CPU
time (``time.process_time``) of a few repeats, ours and talipp's interleaved so machine load hits
both alike.

* ``engine``: :class:`IncrementalFeatureEngine.update` (a dict per candle, the live-trading path)
  and ``update_many``, full feature set, candles per second.
* ``indicators``: the same standard indicators updated one candle at a time, ours
  (:mod:`candlecast.features.streaming`) vs ``talipp``; ratio = our time / talipp time
  (below 1 means we are faster).
* ``batch``: :func:`compute_features` on 1,000,000 candles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from talipp.indicators import ADX as TADX
from talipp.indicators import ATR as TATR
from talipp.indicators import BB as TBB
from talipp.indicators import EMA as TEMA
from talipp.indicators import MACD as TMACD
from talipp.indicators import OBV as TOBV
from talipp.indicators import RSI as TRSI
from talipp.indicators import SMA as TSMA
from talipp.indicators import Stoch as TStoch
from talipp.ohlcv import OHLCV

from candlecast.features import IncrementalFeatureEngine, compute_features, feature_names
from candlecast.features import streaming as ours

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"


def synthetic_candles(n: int, seed: int = 0, timeframe: str = "30m") -> pd.DataFrame:
    """A seeded random walk with valid OHLC and positive volume, in canonical form."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    return pd.DataFrame({
        "timestamp": pd.date_range("2020-01-01", periods=n, freq="30min", tz="UTC"),
        "open": open_, "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread, "close": close,
        "volume": rng.lognormal(3, 0.5, n),
        "exchange": "bench", "symbol": "BTC/USD", "timeframe": timeframe,
    })


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best CPU time (``process_time``: this process only, so other jobs on a shared machine
    inflate it far less than wall time) over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def bench_engine(candles: pd.DataFrame, repeats: int) -> dict[str, float]:
    records = candles.to_dict("records")

    def per_candle() -> None:
        update = IncrementalFeatureEngine(timeframe="30m").update
        for candle in records:
            update(candle)

    def many() -> None:
        IncrementalFeatureEngine(timeframe="30m").update_many(candles)

    t_update = best_of(per_candle, repeats)
    t_many = best_of(many, repeats)
    n = len(candles)
    return {"candles": n, "features": len(feature_names()),
            "update_per_s": n / t_update, "update_us": 1e6 * t_update / n,
            "update_many_per_s": n / t_many}


def indicator_pairs(c: pd.DataFrame) -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """Name -> (ours, talipp) closures, each building a fresh indicator and feeding every candle."""
    close = c["close"].tolist()
    hlc = list(zip(c["high"].tolist(), c["low"].tolist(), close, strict=True))
    cv = list(zip(close, c["volume"].tolist(), strict=True))
    bars = [OHLCV(o, h, lo, cl, v) for o, h, lo, cl, v in
            zip(c["open"], c["high"], c["low"], c["close"], c["volume"], strict=True)]

    def feed_close(ind: Any) -> Callable[[], None]:
        def run() -> None:
            update = ind().update
            for x in close:
                update(x)
        return run

    def feed_hlc(ind: Any) -> Callable[[], None]:
        def run() -> None:
            update = ind().update
            for h, lo, cl in hlc:
                update(h, lo, cl)
        return run

    def feed_cv(ind: Any) -> Callable[[], None]:
        def run() -> None:
            update = ind().update
            for cl, v in cv:
                update(cl, v)
        return run

    def talipp(ind: Any, inputs: list[Any]) -> Callable[[], None]:
        def run() -> None:
            add = ind().add
            for x in inputs:
                add(x)
        return run

    return {
        "SMA(20)": (feed_close(lambda: ours.SMA(20)), talipp(lambda: TSMA(20), close)),
        "EMA(20)": (feed_close(lambda: ours.EMA(20)), talipp(lambda: TEMA(20), close)),
        "RSI(14)": (feed_close(lambda: ours.RSI(14)), talipp(lambda: TRSI(14), close)),
        "MACD(12,26,9)": (feed_close(lambda: ours.MACD(12, 26, 9)),
                          talipp(lambda: TMACD(12, 26, 9), close)),
        "BB(20,2)": (feed_close(lambda: ours.Bollinger(20, 2.0)),
                     talipp(lambda: TBB(20, 2.0), close)),
        "ATR(14)": (feed_hlc(lambda: ours.ATR(14)), talipp(lambda: TATR(14), bars)),
        "ADX(14)": (feed_hlc(lambda: ours.ADX(14)), talipp(lambda: TADX(14, 14), bars)),
        "Stoch(14,3)": (feed_hlc(lambda: ours.Stochastic(14, 3)),
                        talipp(lambda: TStoch(14, 3), bars)),
        "OBV": (feed_cv(ours.OBV), talipp(TOBV, bars)),
    }


def bench_indicators(candles: pd.DataFrame, repeats: int) -> list[dict[str, Any]]:
    rows = []
    n = len(candles)
    for name, (mine, theirs) in indicator_pairs(candles).items():
        t_ours, t_talipp = float("inf"), float("inf")
        for _ in range(repeats):  # interleaved, so load spikes hit both
            t_ours = min(t_ours, best_of(mine, 1))
            t_talipp = min(t_talipp, best_of(theirs, 1))
        rows.append({"indicator": name, "ours_us": 1e6 * t_ours / n,
                     "talipp_us": 1e6 * t_talipp / n, "ratio": t_ours / t_talipp})
    return rows


def bench_batch(n: int, repeats: int) -> dict[str, float]:
    candles = synthetic_candles(n, seed=1)
    t = best_of(lambda: compute_features(candles), repeats)
    return {"candles": n, "seconds": t, "candles_per_s": n / t}


def markdown(result: dict[str, Any]) -> str:
    e, b = result["engine"], result["batch"]
    lines = [
        "| benchmark | ours | talipp | ours/talipp |",
        "|---|---|---|---|",
        f"| engine, full set ({e['features']} features + aux), `update(dict)` | "
        f"{e['update_per_s']:,.0f} candles/s ({e['update_us']:.1f} us) | | |",
        f"| engine, full set, `update_many` | {e['update_many_per_s']:,.0f} candles/s | | |",
    ]
    for r in result["indicators"]:
        lines.append(f"| {r['indicator']} one candle at a time | {r['ours_us']:.2f} us | "
                     f"{r['talipp_us']:.2f} us | {r['ratio']:.2f} |")
    lines.append(f"| batch `compute_features`, {b['candles']:,} candles | {b['seconds']:.2f} s "
                 f"({b['candles_per_s']:,.0f} candles/s) | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-candles", type=int, default=50_000)
    parser.add_argument("--indicator-candles", type=int, default=20_000)
    parser.add_argument("--batch-candles", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.time()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result: dict[str, Any] = {
        "engine": bench_engine(synthetic_candles(args.engine_candles), args.repeats),
        "indicators": bench_indicators(synthetic_candles(args.indicator_candles, seed=2),
                                       args.repeats),
        "batch": bench_batch(args.batch_candles, max(1, args.repeats - 1)),
    }
    result["environment"] = {
        "python": sys.version.split()[0], "numpy": np.__version__, "pandas": pd.__version__,
        "talipp": version("talipp"), "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average_1m_at_start": load, "wall_seconds": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwritten to {args.out}")
    return result


if __name__ == "__main__":
    main()
