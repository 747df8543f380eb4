"""Serving benchmark: the signal service with the full ensemble vs a trivial BentoML service,
and the paper trader's candle-to-order latency against it (issue 5, section 3).

Run: ``python bench/bench_serving.py`` (about 4 minutes once the miniature project is cached;
the first run builds it: about 5 more minutes) or ``--quick`` (about 2 minutes). Writes
``bench/results/serving.json`` and prints a markdown table.

What runs, all over 127.0.0.1 in the same run:

* **the served model**: a miniature copy of the project (``tests/pipeline/mini_project.py``:
  the first 3,000 real Bitfinex 30m candles of BTC and ETH, the ``quick`` profile for training
  length, but the DEFAULT network sizes of Chronos-2 and the transformer from ``params.yaml``,
  so the served ensemble costs per request what the default pipeline's does) runs ingest
  .. feature-store and the model zoo in-process (baselines, LightGBM, Chronos, transformer,
  regime, stacked ensemble, compare), which registers ``candlecast-ensemble@champion`` in the
  copy's ``mlruns.db``. It is cached in ``bench/.cache/serving/`` (rebuilt when the project's
  params, the quick profile or the mini-project recipe change, or with ``--rebuild``).
* **the services**: ``bentoml serve service:SignalService --working-dir bentos`` (the project's
  own service, one worker, as shipped) with a serving config pointing at the copy, and a
  trivial BentoML 1.4 service (mean of 64 floats, same settings: one worker, sync API).
* **the trader** (``candlecast.trading.build_trader``, paper broker, the copy's Feast online
  store, SQLite state with ``synchronous=FULL`` as configured) replays real BTC candles, shifted
  so the last one closes at the latest 30-minute boundary, against the running service over
  HTTP (``/signal``). Its own per-tick timer (``Trader.latencies_s``: candle received -> Feast
  write -> signal call -> risk engine -> orders committed) is the end-to-end latency; the
  signal call and the Feast write are timed separately by wrapping the injected client/sink.
  In paper mode "order submitted" is the committed working order (no network order).
* then a **fresh online row** (the next candle's real features, written as the trader writes
  them) and ``/signal`` is checked to answer ``status: ok`` with ``prob_up`` in (0, 1) from the
  ensemble before anything is timed; every timed answer is checked the same way.
* ``/signal`` at concurrency 1 is reported twice against its p99 target: the load generator's
  repeated request (the same online row each time: after the first, the service's answer
  cache; the Feast read, staleness check and window still run) and the trader's calls (a new
  candle before every request: the whole ensemble runs).
* **load**: a small keep-alive HTTP/1.1 client on raw sockets (so the client's own cost is a
  few microseconds), bounded in requests and seconds per measurement; concurrency 1 (latency)
  and 8 (throughput, one connection per thread); trivial and ours interleaved, two rounds, so
  load spikes on the shared machine hit both.
* **memory**: RSS (and USS) of each service's process tree after the load.

The served series' staleness limit is raised (``max_feature_age_bars``) to cover the replayed
history: the sample candles are shifted in time but still span hours. The check itself is
unchanged and costs the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: the serving_bench parts

from serving_bench import RESULTS  # noqa: E402
from serving_bench.project import build_mini_project, served_project  # noqa: E402
from serving_bench.report import build_result, markdown, markdown_baseline  # noqa: E402
from serving_bench.scenarios import Budget, measure  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer requests, one round, a shorter replay (~2 minutes)")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the cached miniature project (after code changes)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--trader-ticks", type=int)
    parser.add_argument("--predict-candles", type=int,
                        help="candles per /predict request (default: trade.predict_candles)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline-src", type=Path,
                        help="a copy of an older src/ (e.g. before an optimisation): also serve "
                        "it (PYTHONPATH) and measure it in the same rounds, with a trader "
                        "using the DataFrame Feast write")
    args = parser.parse_args(argv)
    if args.build_only:
        build_mini_project()
        return {}
    budget = Budget.of(args.quick, args.rounds, args.trader_ticks, args.predict_candles)

    started = time.time()
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    marker, cached = served_project(args.rebuild)
    print(f"miniature project {'cached' if cached else 'built'} ({time.time() - started:.0f} s);"
          f" champion {marker['model_version']}", flush=True)
    measured = measure(budget, marker["model_version"], args.baseline_src)
    result = build_result(measured, budget, quick=args.quick, marker=marker, cached=cached,
                          baseline_src=args.baseline_src, load_avg=load_avg, started=started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(result))
    if "baseline" in result:
        print(markdown_baseline(result))
    print(f"\nwritten to {args.out}")
    return result


if __name__ == "__main__":
    main()
