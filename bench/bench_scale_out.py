"""Scale-out: the zoo on 1 and 2 Dask workers, and the pipeline against the number of series.

One command: ``python bench/bench_scale_out.py`` (repo root, project venv). Small on purpose
(the `quick` profile on the first ``ROWS`` real candles per coin; the machine is shared), so
the absolute times are not research numbers; the ratios and the CPU time are the point.

1. **Zoo stage, 1 vs 2 workers**: ``regime`` + ``train-model@lightgbm`` (3 folds, Optuna inside
   each) on 3 coins, with ``compute.runner`` inline, dask with 1 worker, dask with 2 workers
   (a LocalCluster per stage, its start-up included: that is what a stage pays).
2. **Pipeline vs number of series**: ingest .. feature-store, regime, baselines, lightgbm,
   ensemble on 1, 3 and 5 coins (inline), per stage.
3. **An estimate for 80 coins on N workers** from those figures (see ``_estimate``).

CPU time is this process plus its finished children (the Dask workers): ``getrusage``.
Writes ``bench/results/scale_out.json`` and prints a table.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from candlecast.config import deep_merge, load_params  # noqa: E402
from candlecast.pipeline.paths import Paths  # noqa: E402
from candlecast.pipeline.prefect_server import local_prefect_server  # noqa: E402
from candlecast.pipeline.runner import run_stage  # noqa: E402
from candlecast.runtime import set_offline_defaults  # noqa: E402

ROWS = 3000
COINS = ["BTC/USD", "ETH/USD", "LTC/USD", "EOS/USD", "XRP/USD"]
PREP = ["ingest", "validate", "features", "feature-store"]


def _project(target: Path, symbols: list[str], compute: dict | None = None) -> Paths:
    """A copy of the pipeline files with the first ROWS candles of ``symbols``."""
    for name in ("feature_repo", "flows", "expectations"):
        shutil.copytree(ROOT / name, target / name,
                        ignore=shutil.ignore_patterns("__pycache__", "uncommitted"))
    sample = target / "data/sample/bitfinex_30m"
    sample.mkdir(parents=True)
    for symbol in symbols:
        name = f"{symbol.split('/')[0]}.csv.gz"
        lines = gzip.decompress((ROOT / "data/sample/bitfinex_30m" / name).read_bytes())
        sample.joinpath(name).write_bytes(
            gzip.compress(b"\n".join(lines.split(b"\n")[: ROWS + 1]) + b"\n", mtime=0))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = deep_merge(params, yaml.safe_load((ROOT / "profiles/quick.yaml").read_text()))
    params = deep_merge(params, {"ingest": {"symbols": symbols},
                                 "models": {"run": ["baselines", "lightgbm"]},
                                 "compute": compute or {"runner": "inline"}})
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return Paths(target)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _stages(paths: Paths, stages: list[tuple[str, str | None]]) -> dict[str, dict[str, float]]:
    params = load_params(paths.params)
    out = {}
    for stage, arg in stages:
        wall, cpu = time.perf_counter(), _cpu()
        run_stage(stage, params, paths, arg)
        out[f"{stage}@{arg}" if arg else stage] = {
            "wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(_cpu() - cpu, 2)}
    return out


def _total(stages: dict[str, dict[str, float]], key: str) -> float:
    return round(sum(v[key] for v in stages.values()), 2)


def zoo_workers(tmp: Path) -> dict[str, object]:
    zoo = [("regime", None), ("train-model", "lightgbm")]
    base = _project(tmp / "zoo-base", COINS[:3])
    _stages(base, [(s, None) for s in PREP])
    results = {}
    for label, compute in (("inline", {"runner": "inline"}),
                           ("dask, 1 worker", {"runner": "dask", "workers": 1}),
                           ("dask, 2 workers", {"runner": "dask", "workers": 2})):
        target = tmp / f"zoo-{label.replace(' ', '').replace(',', '-')}"
        shutil.copytree(base.root, target)
        raw = yaml.safe_load((target / "params.yaml").read_text())
        raw["compute"] = compute
        (target / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        stages = _stages(Paths(target), zoo)
        results[label] = {"stages": stages, "wall_s": _total(stages, "wall_s"),
                          "cpu_s": _total(stages, "cpu_s")}
        print(f"zoo {label}: {results[label]['wall_s']} s wall, {results[label]['cpu_s']} s CPU",
              flush=True)
    one, two = results["dask, 1 worker"]["wall_s"], results["dask, 2 workers"]["wall_s"]
    return {"coins": 3, "folds": 3, "runs": results,
            "speedup_2_vs_1_worker": round(one / two, 2),
            "speedup_2_workers_vs_inline": round(results["inline"]["wall_s"] / two, 2)}


def series_scaling(tmp: Path) -> dict[str, object]:
    plan = [(s, None) for s in PREP] + [("regime", None), ("train-model", "baselines"),
                                        ("train-model", "lightgbm"), ("ensemble", None)]
    runs = {}
    for n in (1, 3, 5):
        stages = _stages(_project(tmp / f"series-{n}", COINS[:n]), plan)
        runs[n] = {"stages": stages, "wall_s": _total(stages, "wall_s"),
                   "cpu_s": _total(stages, "cpu_s")}
        print(f"pipeline, {n} coin(s): {runs[n]['wall_s']} s wall, {runs[n]['cpu_s']} s CPU",
              flush=True)
    return {"runs": runs,
            "ratio_5_vs_1_coins_wall": round(runs[5]["wall_s"] / runs[1]["wall_s"], 2),
            "ratio_5_vs_1_coins_cpu": round(runs[5]["cpu_s"] / runs[1]["cpu_s"], 2)}


def _estimate(scaling: dict, zoo: dict, coins: int = 80, key: str = "cpu_s") -> dict[str, object]:
    """Seconds per coin from the 1 -> 5 coin slope (``key``: CPU by default, the figure the
    shared machine disturbs least), split into what fans out (the units: regime per fold and
    series, models per fold) and what stays serial (ingest .. feature-store, ensemble, MLflow
    logging); time(N) = serial + parallel / (1 + (min(N, units) - 1) * e) (Amdahl), with the
    efficiency e measured for 2 Dask workers against 1 applied to every added worker."""
    runs = scaling["runs"]
    parallel_stages = ("regime", "train-model@baselines", "train-model@lightgbm")

    def split(n: int) -> tuple[float, float]:
        stages = runs[n]["stages"]
        par = sum(stages[s][key] for s in parallel_stages)
        return sum(v[key] for v in stages.values()) - par, par

    serial1, par1 = split(1)
    serial5, par5 = split(5)
    serial = serial1 + max(serial5 - serial1, 0) / 4 * (coins - 1)
    parallel = par1 + max(par5 - par1, 0) / 4 * (coins - 1)
    efficiency = min(zoo["speedup_2_vs_1_worker"] / 2, 1.0)
    units = 3 * (1 + coins)  # 3 folds: regime per (fold, coin) + each model per fold
    out = {"coins": coins, "basis": key, "serial_s": round(serial),
           "parallel_s_on_1_worker": round(parallel),
           "two_worker_efficiency": round(efficiency, 2), "s_by_workers": {}}
    for workers in (1, 2, 8, 32):
        speed = 1 + (min(workers, units) - 1) * efficiency
        out["s_by_workers"][workers] = round(serial + parallel / speed)
    return out


def main() -> None:
    set_offline_defaults()
    with tempfile.TemporaryDirectory(prefix="candlecast-scale-") as tmp:
        tmp_path = Path(tmp)
        os.environ["PREFECT_HOME"] = str(tmp_path / ".prefect")
        with local_prefect_server(log=tmp_path / "prefect.log") as api:
            os.environ["PREFECT_API_URL"] = api
            os.chdir(tmp_path)
            zoo = zoo_workers(tmp_path)
            scaling = series_scaling(tmp_path)
    result = {"machine": f"{os.cpu_count()} cores, shared by other jobs (noisy wall times)",
              "rows_per_coin": ROWS, "profile": "quick", "zoo_workers": zoo,
              "series_scaling": scaling,
              "estimate_80_coins": {"cpu": _estimate(scaling, zoo, key="cpu_s"),
                                    "wall": _estimate(scaling, zoo, key="wall_s")}}
    out = ROOT / "bench" / "results" / "scale_out.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| run | wall s | CPU s |\n|---|---|---|")
    for label, run in zoo["runs"].items():
        print(f"| zoo (regime + lightgbm), 3 coins, {label} | {run['wall_s']} | {run['cpu_s']} |")
    for n, run in scaling["runs"].items():
        print(f"| pipeline (prep + zoo + ensemble), {n} coin(s) | {run['wall_s']} | "
              f"{run['cpu_s']} |")
    print(f"\nzoo 2 vs 1 worker: {zoo['speedup_2_vs_1_worker']}x; "
          f"5 vs 1 coins: {scaling['ratio_5_vs_1_coins_wall']}x wall; "
          f"80 coins (s by workers): CPU basis "
          f"{result['estimate_80_coins']['cpu']['s_by_workers']}, wall basis "
          f"{result['estimate_80_coins']['wall']['s_by_workers']}")


if __name__ == "__main__":
    main()
