"""Backtester speed and agreement against backtesting.py and vectorbt.

One command (from the repo root, in the benchmark venv that also has the anchors)::

    python bench/bench_backtest.py            # full run: 1,000,000 synthetic + 20k real bars
    python bench/bench_backtest.py --quick    # 100,000 synthetic bars, fewer repeats

Set up the benchmark venv once (the anchors are benchmark-only dependencies; vectorbt pulls
numba, so they never go into the project venv)::

    python3.11 -m venv .venv-bench
    .venv-bench/bin/pip install -r bench/requirements.txt
    .venv-bench/bin/pip install --no-deps -e .

Workload (the issue's): SMA(10)/SMA(30) long-only crossover, 0.1 % commission per fill, all
cash in each trade, decisions at a bar's close filled at the next bar's open (vectorbt is given
the shifted signals and the open as price; backtesting.py does this by default). All three
engines get the SAME signal array. Measured in one run, as ratios:

* vectorized path vs vectorbt ``Portfolio.from_signals`` (target: >= 1x, equity within 0.5 %);
* event-driven path with the full risk engine (default ``RiskConfig`` with the drawdown halt
  off so it trades the whole series) vs backtesting.py (target: >= 10x);
* a 20k-bar real-data backtest with the full report (target: < 2 s).

Timing: each engine's best of ``repeats`` runs (backtesting.py: one run, it is slow), each run
after a full garbage collection. The machine is shared, so its load drifts: the event path is
timed both before and right after backtesting.py's run and keeps its best time, and a trivial
loop probe (ns per iteration, ~30 when idle) is recorded before and after.

Writes ``bench/results/bench_backtest.json`` and prints a markdown table. A missing anchor is
reported as "not installed" and its ratios are left out.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from candlecast.backtest import (  # noqa: E402
    BacktestConfig,
    CostConfig,
    Lineage,
    build_report,
    buy_and_hold,
    prepare_market,
    run_event_driven,
    run_vectorized,
    sma_crossover_signal,
    write_report,
)
from candlecast.data.sample import load_sample  # noqa: E402
from candlecast.risk import LimitsConfig, RiskConfig  # noqa: E402

try:
    import vectorbt as vbt
except ImportError:  # pragma: no cover - depends on the venv
    vbt = None
try:
    from backtesting import Backtest, Strategy
except ImportError:  # pragma: no cover
    Backtest = Strategy = None
# backtesting.py warns on every order it cancels once the random walk has ruined the account
warnings.filterwarnings("ignore", message=".*Broker canceled the relative-sized order.*")

FEE = 0.001
CASH = 10_000.0


def synthetic_candles(n: int, seed: int = 7) -> pd.DataFrame:
    """Seeded hourly GBM candles with valid OHLC and ample volume."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.006, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.0005, n))
    wiggle = np.abs(rng.normal(0.0, 0.003, n))
    return pd.DataFrame({
        "timestamp": pd.date_range("2000-01-01", periods=n, freq="1h", tz="UTC"),
        "open": open_,
        "high": np.maximum(open_, close) * (1 + wiggle),
        "low": np.minimum(open_, close) * (1 - wiggle),
        "close": close,
        "volume": rng.lognormal(8, 0.5, n),
        "symbol": "SYN/USD",
        "timeframe": "1h",
    })


def real_candles() -> pd.DataFrame:
    frame = load_sample(ROOT / "data" / "sample", "coinbase_1h", "BTC/USD")
    return frame.sort_values("timestamp").drop_duplicates("timestamp").reset_index(drop=True)


def simple_atr(market, window: int = 14) -> np.ndarray:  # type: ignore[no-untyped-def]
    prev = np.concatenate([[market.close[0]], market.close[:-1]])
    tr = np.maximum(market.high - market.low,
                    np.maximum(np.abs(market.high - prev), np.abs(market.low - prev)))
    return pd.Series(tr).rolling(window).mean().to_numpy()


def best_of(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeats`` calls. Each starts after a full garbage collection, so no
    engine pays for a collection of what the set-up or the previous run left behind (the
    collector stays on during the call, unlike ``timeit``'s default)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        out = None
        gc.collect()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_vectorbt(market, signal: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    index = market.timestamps.tz_localize(None)
    held = pd.Series(signal.astype(bool), index=index)
    prev = held.shift(1, fill_value=False)
    entries = (held & ~prev).shift(1, fill_value=False)  # decided at t, filled at t+1's open
    exits = (~held & prev).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(
        pd.Series(market.close, index=index), entries, exits,
        price=pd.Series(market.open, index=index), fees=FEE, init_cash=CASH, freq="1h")
    return float(pf.final_value())


def run_backtesting_py(market, signal: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    frame = pd.DataFrame({"Open": market.open, "High": market.high, "Low": market.low,
                          "Close": market.close, "Volume": market.volume},
                         index=market.timestamps.tz_localize(None))
    held = signal.astype(bool)

    class Crossover(Strategy):  # type: ignore[misc, valid-type]
        def init(self) -> None:
            self.held = self.I(lambda: held.astype(float), name="held")

        def next(self) -> None:
            now, before = self.held[-1] > 0, len(self.held) > 1 and self.held[-2] > 0
            if now and not before:
                self.buy()
            elif before and not now and self.position:
                self.position.close()

    # cash large enough that whole-unit rounding is negligible; equity rescaled to CASH
    scale = 1e6
    bt = Backtest(frame, Crossover, cash=CASH * scale, commission=FEE, finalize_trades=True)
    stats = bt.run()
    return float(stats["Equity Final [$]"]) / scale


def _comparable(equity: float) -> bool:
    """Equity comparisons only mean something while the account is alive: on 1M random-walk
    bars the crossover pays 0.2 % on ~28k round trips and every engine ends near 0, where
    whole-unit rounding (backtesting.py) and minimum sizes decide the last digits."""
    return equity > 0.01 * CASH


def bench_dataset(label: str, candles: pd.DataFrame, repeats: int, with_bt: bool) -> dict:
    market = prepare_market(candles)
    signal = sma_crossover_signal(market.close, 10, 30, long_only=True)
    atr = simple_atr(market)
    costs = CostConfig.commission_only(FEE * 1e4)
    cfg = BacktestConfig(initial_equity=CASH, allow_short=False)
    full_risk = RiskConfig(limits=LimitsConfig(max_drawdown=None))
    n = market.n
    out: dict = {"dataset": label, "bars": n}

    t_vec, vec = best_of(lambda: run_vectorized(market, signal, costs, cfg), repeats)
    out["ours_vectorized"] = {"seconds": t_vec, "bars_per_s": n / t_vec,
                              "final_equity": vec.final_equity}

    def event_full():  # type: ignore[no-untyped-def]
        return run_event_driven(market, signal, full_risk, costs, cfg, atr=atr)

    def event_plain():  # type: ignore[no-untyped-def]
        return run_event_driven(market, signal, RiskConfig.plain(), costs, cfg)

    t_evt, evt = best_of(event_full, repeats)
    t_plain, plain = best_of(event_plain, repeats)
    decisions = evt.decisions["action"].value_counts().to_dict()
    if vbt is not None:
        run_vectorbt(prepare_market(candles.iloc[:2000]), signal[:2000])  # numba warm-up
        t_vbt, eq_vbt = best_of(lambda: run_vectorbt(market, signal), repeats)
        out["vectorbt"] = {"seconds": t_vbt, "bars_per_s": n / t_vbt, "final_equity": eq_vbt}
        out["vectorized_speedup_vs_vectorbt"] = t_vbt / t_vec
        if _comparable(eq_vbt):
            out["vectorized_equity_diff_vs_vectorbt"] = abs(vec.final_equity / eq_vbt - 1.0)
    else:
        out["vectorbt"] = "not installed"
    if Backtest is not None and with_bt:
        t_bt, eq_bt = best_of(lambda: run_backtesting_py(market, signal), 1)
        # the machine's load can drift during backtesting.py's long run: time the event path
        # again right after it and keep the best of all runs (before and after)
        t_evt = min(t_evt, best_of(event_full, repeats)[0])
        t_plain = min(t_plain, best_of(event_plain, repeats)[0])
        out["backtesting_py"] = {"seconds": t_bt, "bars_per_s": n / t_bt, "final_equity": eq_bt}
        out["event_full_risk_speedup_vs_backtesting_py"] = t_bt / t_evt
        out["event_plain_speedup_vs_backtesting_py"] = t_bt / t_plain
        if _comparable(eq_bt):
            out["vectorized_equity_diff_vs_backtesting_py"] = abs(vec.final_equity / eq_bt - 1.0)
    elif Backtest is None:
        out["backtesting_py"] = "not installed"
    out["ours_event_full_risk"] = {"seconds": t_evt, "bars_per_s": n / t_evt,
                                   "final_equity": evt.final_equity,
                                   "exposure": float(np.mean(evt.position != 0)),
                                   "trades": len(evt.trades), "decisions": decisions}
    out["ours_event_plain"] = {"seconds": t_plain, "bars_per_s": n / t_plain,
                               "final_equity": plain.final_equity}
    return out


def bench_report(candles: pd.DataFrame, repeats: int) -> dict:
    def full() -> None:
        market = prepare_market(candles)
        signal = sma_crossover_signal(market.close, 10, 30, long_only=True)
        strategy = run_event_driven(market, signal, RiskConfig(), atr=simple_atr(market),
                                    name="sma_risk")
        plain = run_vectorized(market, signal, name="sma_plain")
        hold = buy_and_hold(market)
        report = build_report([strategy, hold, plain],
                              Lineage("bench", "bench", None, {"fast": 10, "slow": 30}),
                              n_trials=2)
        with tempfile.TemporaryDirectory() as tmp:
            write_report(report, tmp)

    seconds, _ = best_of(full, repeats)
    return {"bars": len(candles), "seconds": seconds}


def loop_ns() -> float:
    """Machine-load probe: ns per iteration of a trivial Python loop (~30 ns when idle)."""
    start, x = time.perf_counter(), 0
    for i in range(2_000_000):
        x += i
    return (time.perf_counter() - start) / 2_000_000 * 1e9


def _fmt_ratio(value: object) -> str:
    return f"{value:.2f}x" if isinstance(value, float) else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k synthetic bars, 1 repeat")
    parser.add_argument("--bars", type=int, default=None, help="synthetic bars (default 1e6)")
    args = parser.parse_args()
    n = args.bars or (100_000 if args.quick else 1_000_000)
    repeats = 1 if args.quick else 3
    results = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "vectorbt": getattr(vbt, "__version__", "not installed") if vbt else "not installed",
        "backtesting": __import__("backtesting").__version__ if Backtest else "not installed",
        "cpus": os.cpu_count(),
        "loop_ns_before": loop_ns(),
        "synthetic": bench_dataset(f"synthetic {n:,} x 1h", synthetic_candles(n), repeats, True),
        "real": bench_dataset("coinbase BTC/USD 1h", real_candles(), repeats, True),
        "report_20k": bench_report(real_candles(), repeats),
    }
    results["loop_ns_after"] = loop_ns()
    out = ROOT / "bench" / "results" / "bench_backtest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))

    print("| dataset | engine | bars/s | final equity |")
    print("|---|---|---:|---:|")
    for key in ("synthetic", "real"):
        block = results[key]
        for engine in ("ours_vectorized", "vectorbt", "ours_event_full_risk", "ours_event_plain",
                       "backtesting_py"):
            row = block.get(engine)
            if isinstance(row, dict):
                print(f"| {block['dataset']} | {engine} | {row['bars_per_s']:,.0f} | "
                      f"{row['final_equity']:,.2f} |")
            elif row is not None:
                print(f"| {block['dataset']} | {engine} | {row} | |")
    print()
    print("| ratio (same run) | synthetic | real 20k | target |")
    print("|---|---:|---:|---|")
    syn, real = results["synthetic"], results["real"]
    for key, target in (("vectorized_speedup_vs_vectorbt", ">= 1x"),
                        ("event_full_risk_speedup_vs_backtesting_py", ">= 10x"),
                        ("event_plain_speedup_vs_backtesting_py", "(info)")):
        print(f"| {key} | {_fmt_ratio(syn.get(key))} | {_fmt_ratio(real.get(key))} | {target} |")
    for key in ("vectorized_equity_diff_vs_vectorbt", "vectorized_equity_diff_vs_backtesting_py"):
        s, r = syn.get(key), real.get(key)
        cells = [f"{v:.4%}" if v is not None else "n/a (account ruined)" for v in (s, r)]
        print(f"| {key} | {cells[0]} | {cells[1]} | < 0.5% |")
    print(f"\n20k-bar backtest + full report: {results['report_20k']['seconds']:.2f} s "
          f"(target < 2 s); loop probe {results['loop_ns_before']:.0f} ns/iter "
          "(~30 on an idle machine)")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
