"""The serving benchmark's result: targets and whether they are met, ratios against the
trivial BentoML service of the same run, the environment, and the markdown tables printed."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from serving_bench import MODELS
from serving_bench.scenarios import Budget

TARGETS = {"signal_p99_c1_ms": 15.0, "signal_c8_throughput_vs_trivial": 0.5,
           "trader_p99_ms": 50.0}
#: the ``/signal`` p99 target applies to both: a repeated request (its exact model input
#: answered before: the answer cache) and a new candle before every request (the trader's
#: calls: Feast read, window, the whole ensemble)



def ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"


def mean_of(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def markdown(r: dict[str, Any]) -> str:
    t, s, p, tr = r["trivial"], r["signal"], r["predict"], r["trader"]
    ratio = r["ratios"]
    ok = lambda met: "met" if met else "NOT met"  # noqa: E731
    lines = [
        "| measurement | ours | trivial BentoML (same run) | ratio | target |",
        "|---|---|---|---|---|",
        f"| `/signal` c=1 p50 / p99 | {ms(s['c1']['p50_ms'])} / {ms(s['c1']['p99_ms'])} | "
        f"{ms(t['c1']['p50_ms'])} / {ms(t['c1']['p99_ms'])} | p99 x{ratio['signal_c1_p99']:.1f} "
        f"| p99 < 15 ms: {ok(r['targets_met']['signal_p99_c1'])} |",
        f"| ... of which in the service's handler (mean, Prometheus) | "
        f"{ms(mean_of(s['c1']['handler_mean_ms_by_round']))} | | | |",
        f"| `/signal` c=1, a new candle before every request (the trader's calls), p50 / p99 | "
        f"{ms(tr['signal_call']['p50_ms'])} / {ms(tr['signal_call']['p99_ms'])} | | | "
        f"p99 < 15 ms: {ok(r['targets_met']['signal_p99_c1_new_candle'])} |",
        f"| `/signal` c=1 throughput | {s['c1']['throughput_rps']:.0f} req/s | "
        f"{t['c1']['throughput_rps']:.0f} req/s | {ratio['signal_c1_throughput']:.2f} | |",
        f"| `/signal` c=8 throughput (p50 / p99) | {s['c8']['throughput_rps']:.0f} req/s "
        f"({ms(s['c8']['p50_ms'])} / {ms(s['c8']['p99_ms'])}) | {t['c8']['throughput_rps']:.0f} "
        f"req/s ({ms(t['c8']['p50_ms'])} / {ms(t['c8']['p99_ms'])}) | "
        f"{ratio['signal_c8_throughput']:.2f} | >= 0.50: "
        f"{ok(r['targets_met']['signal_c8_throughput'])} |",
        f"| `/predict` c=1, {p['candles']} candles, p50 / p99 | {ms(p['c1']['p50_ms'])} / "
        f"{ms(p['c1']['p99_ms'])} ({p['c1']['throughput_rps']:.0f} req/s; handler mean "
        f"{ms(mean_of(p['c1']['handler_mean_ms_by_round']))}) | | "
        f"p50 x{ratio['predict_c1_p50']:.1f} | |",
        f"| trader candle -> order committed, {tr['ticks']} ticks, p50 / p99 / max | "
        f"{ms(tr['latency']['p50_ms'])} / {ms(tr['latency']['p99_ms'])} / "
        f"{ms(tr['latency']['max_ms'])} | | | p99 < 50 ms: {ok(r['targets_met']['trader_p99'])} |",
        f"| ... of which `/signal` call (httpx; the row above) p50 / p99 | "
        f"{ms(tr['signal_call']['p50_ms'])} / {ms(tr['signal_call']['p99_ms'])} | | | |",
        f"| ... ... in the service's handler (mean, Prometheus) | "
        f"{ms(tr.get('service_handler_mean_ms'))} | | | |",
        f"| ... Feast online write p50 / p99 | {ms(tr['feast_write']['p50_ms'])} / "
        f"{ms(tr['feast_write']['p99_ms'])} | | | |",
        f"| ... features + risk + SQLite commit p50 / p99 | "
        f"{ms(tr['rest_features_risk_commit']['p50_ms'])} / "
        f"{ms(tr['rest_features_risk_commit']['p99_ms'])} | | | |",
        f"| service RSS (all processes; worker USS) | {r['memory']['signal']['rss_mb_total']:.0f}"
        f" MB ({r['memory']['signal']['worker_uss_mb']:.0f} MB) | "
        f"{r['memory']['trivial']['rss_mb_total']:.0f} MB "
        f"({r['memory']['trivial']['worker_uss_mb']:.0f} MB) | "
        f"x{ratio['rss']:.1f} | |",
    ]
    return "\n".join(lines)


def markdown_baseline(r: dict[str, Any]) -> str:
    """Old (``--baseline-src``) vs new, same run."""
    b, s, tr = r["baseline"], r["signal"], r["trader"]
    bt = b["trader"]
    rows = [
        "| same run | before (baseline src) | after | |",
        "|---|---|---|---|",
        f"| `/signal` c=1 p50 / p99 | {ms(b['c1']['p50_ms'])} / {ms(b['c1']['p99_ms'])} | "
        f"{ms(s['c1']['p50_ms'])} / {ms(s['c1']['p99_ms'])} | repeated request: a cache hit "
        "after |",
        f"| ... handler mean | {ms(mean_of(b['c1']['handler_mean_ms_by_round']))} | "
        f"{ms(mean_of(s['c1']['handler_mean_ms_by_round']))} | |",
        f"| `/signal` c=8 throughput | {b['c8']['throughput_rps']:.0f} req/s | "
        f"{s['c8']['throughput_rps']:.0f} req/s | trivial "
        f"{r['trivial']['c8']['throughput_rps']:.0f} |",
        f"| trader candle -> order p50 / p99 | {ms(bt['latency']['p50_ms'])} / "
        f"{ms(bt['latency']['p99_ms'])} | {ms(tr['latency']['p50_ms'])} / "
        f"{ms(tr['latency']['p99_ms'])} | every tick a new candle (no cache hit) |",
        f"| ... `/signal` call p50 / p99 | {ms(bt['signal_call']['p50_ms'])} / "
        f"{ms(bt['signal_call']['p99_ms'])} | {ms(tr['signal_call']['p50_ms'])} / "
        f"{ms(tr['signal_call']['p99_ms'])} | |",
        f"| ... Feast online write p50 / p99 | {ms(bt['feast_write']['p50_ms'])} / "
        f"{ms(bt['feast_write']['p99_ms'])} | {ms(tr['feast_write']['p50_ms'])} / "
        f"{ms(tr['feast_write']['p99_ms'])} | |",
    ]
    return "\n".join(rows)


def strip_samples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_samples(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [strip_samples(v) for v in value]
    return value


def build_result(m: dict[str, Any], budget: Budget, *, quick: bool, marker: dict[str, Any],
                 cached: bool, baseline_src: Path | None, load_avg: float | None,
                 started: float) -> dict[str, Any]:
    """The result JSON from :func:`serving_bench.scenarios.measure`'s measurements."""
    merged, trader, mem, meta = m["merged"], m["trader"], m["memory"], m["meta"]
    s1, s8, t1, t8, p1 = (merged[k] for k in ("s1", "s8", "t1", "t8", "p1"))
    (c1_n, c1_s), (c8_n, c8_s), (pr_n, pr_s) = budget.c1, budget.c8, budget.predict
    result: dict[str, Any] = {
        "targets": TARGETS,
        "targets_met": {
            "signal_p99_c1": s1["p99_ms"] < TARGETS["signal_p99_c1_ms"],
            "signal_p99_c1_new_candle": trader["signal_call"]["p99_ms"]
            < TARGETS["signal_p99_c1_ms"],
            "signal_c8_throughput": s8["throughput_rps"] / t8["throughput_rps"]
            >= TARGETS["signal_c8_throughput_vs_trivial"],
            "trader_p99": trader["latency"]["p99_ms"] < TARGETS["trader_p99_ms"],
        },
        "ratios": {
            "signal_c1_p50": s1["p50_ms"] / t1["p50_ms"],
            "signal_c1_p99": s1["p99_ms"] / t1["p99_ms"],
            "signal_c1_throughput": s1["throughput_rps"] / t1["throughput_rps"],
            "signal_c8_throughput": s8["throughput_rps"] / t8["throughput_rps"],
            "signal_c8_throughput_by_round": [
                a / b for a, b in zip(s8["throughput_rps_by_round"],
                                      t8["throughput_rps_by_round"], strict=True)],
            "predict_c1_p50": p1["p50_ms"] / t1["p50_ms"],
            "rss": mem["signal"]["rss_mb_total"] / mem["trivial"]["rss_mb_total"],
        },
        "signal": {"c1": s1, "c8": s8, "example": m["answer"]},
        "trivial": {"c1": t1, "c8": t8, "request": "POST /mean {values: 64 floats}"},
        "predict": {"c1": p1, "candles": m["n_predict"]},
        "trader": trader,
        "memory": mem,
        "service": {
            "model_version": marker["model_version"], "window_rows": meta.get("window_rows"),
            "model_source": meta.get("model_source"), "flavor": meta.get("flavor"),
            "ready_s": m["ready_s"]["signal"], "trivial_ready_s": m["ready_s"]["trivial"],
            "fresh_row_close": m["fresh"] + "Z",
            "max_feature_age_bars": m["max_feature_age_bars"],
            "zoo": MODELS, "workers": 1,
            "accelerated_models": meta.get("accelerated_models"),
            "candlecast_request_duration_series": sum(
                line.startswith("candlecast_request_duration_seconds_count")
                for line in m["metrics_text"].splitlines()),
        },
        "load_generator": {
            "client": "raw-socket HTTP/1.1 keep-alive, one connection per thread",
            "rounds": budget.rounds, "c1": {"max_requests": c1_n, "max_seconds": c1_s},
            "c8": {"max_requests": c8_n, "max_seconds": c8_s},
            "predict": {"max_requests": pr_n, "max_seconds": pr_s}, "quick": quick,
        },
        "mini_project": {"cached": cached, **marker},
    }
    if baseline_src is not None:
        b1, b8, base_trader = merged["b1"], merged["b8"], m["base_trader"]
        result["baseline"] = {
            "src": str(baseline_src), "c1": b1, "c8": b8, "trader": base_trader,
            "ready_s": m["ready_s"]["baseline"], "memory": mem.get("signal_baseline"),
            "ratios": {"signal_c1_p50_new_over_old": s1["p50_ms"] / b1["p50_ms"],
                       "signal_c1_p99_new_over_old": s1["p99_ms"] / b1["p99_ms"],
                       "signal_c8_throughput_vs_trivial": b8["throughput_rps"]
                       / t8["throughput_rps"],
                       "trader_p99_new_over_old": trader["latency"]["p99_ms"]
                       / base_trader["latency"]["p99_ms"]},
        }
    result["environment"] = {
        "python": sys.version.split()[0], "bentoml": version("bentoml"),
        "feast": version("feast"), "mlflow": version("mlflow"), "httpx": version("httpx"),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average_1m_at_start": load_avg,
        "load_average_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "wall_seconds": time.time() - started,
    }
    return strip_samples(result)
