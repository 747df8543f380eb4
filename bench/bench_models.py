"""Model-zoo benchmark: training time per model and fold, inference latency per model and for
the whole ensemble, single row and batch, on ONE core.

Run: ``python bench/bench_models.py`` after ``dvc repro`` (it reads the pipeline's outputs:
``models/zoo/*/folds.csv`` for the training times measured during the run, and the deployable
ensemble in ``models/ensemble/serving``). Writes ``bench/results/models.json`` and prints a
markdown table.

* ``training``: fit and predict seconds of every model in every walk-forward fold, as recorded
  by the ``train-model`` stages (the same process, data and threads as ``dvc repro``).
* ``latency``: p50/p99 over repeated calls (``time.perf_counter``), one thread
  (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``):
  - per base model, single row = the model asked for ONE decision time given the rows its
    window needs (Chronos: one forecast, as the ensemble asks it; the transformer's public
    ``predict_proba_up`` answers every row of its window); batch = ``--batch`` consecutive
    decision times in one call (per-row cost);
  - ``ensemble``: :meth:`Ensemble.predict` of one series' last ``window_rows`` feature rows
    (``rows="last"``: GARCH filter, regimes, every base model, stacking, calibration);
  - ``ensemble_pyfunc``: the same through the registered MLflow pyfunc (schema enforcement);
  - the named alternative: ``ensemble_all_rows`` answers every row of the same window (what
    a caller gets without the last-row path); ratio = last-row time / all-rows time.

Target: ensemble single-row p99 < 20 ms on one core, Chronos included.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "models.json"
TARGET_MS = 20.0


def percentiles(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    values = np.asarray(times)
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean()), "repeats": repeats}


def training_times(root: Path, models: list[str]) -> pd.DataFrame:
    rows = []
    for name in models:
        table = pd.read_csv(root / "models" / "zoo" / name / "folds.csv")
        for _, row in table.iterrows():
            rows.append({"model": row["model"], "fold": int(row["fold"]),
                         "n_train": int(row["n_train"]), "n_test": int(row["n_test"]),
                         "fit_s": float(row["fit_seconds"]),
                         "predict_s": float(row["predict_seconds"]), "status": row["status"]})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="project root (after dvc repro)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per single-row case")
    parser.add_argument("--batch", type=int, default=1024, help="rows per batch call")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from candlecast.config import load_params
    from candlecast.models.ensemble import Ensemble, base_prediction, chronos_rows

    root = args.root.resolve()
    serving = root / "models" / "registered" / "serving"
    if not serving.exists():
        raise SystemExit(f"{serving} is missing: run `dvc repro` first")
    params = load_params(root / "params.yaml")
    ensemble = Ensemble.load(serving)
    # the stack the service runs: the bundled policy's horizon (else the primary one)
    horizon = int((ensemble.policy or {}).get("horizon", ensemble.primary_horizon))
    member = ensemble.members[horizon]
    data = pd.read_parquet(root / "data" / "training" / "dataset.parquet")
    series = data[ensemble.series_column].iloc[-1]
    rows = (data[data[ensemble.series_column] == series]
            .sort_values(ensemble.time_column)[ensemble.input_columns].reset_index(drop=True))
    window = rows.tail(ensemble.window_rows).reset_index(drop=True)

    latency: dict[str, dict[str, Any]] = {}
    for name in member.stacker.models:
        model = member.base[name]
        context = int(member.manifest["context_bars"].get(name, 0))
        single = rows.tail(context + 1).reset_index(drop=True)
        batch = rows.tail(args.batch + context).reset_index(drop=True)
        repeats_batch = max(5, args.repeats // 20)
        if callable(getattr(model, "contexts", None)):  # Chronos: forecast the last row only
            last_row = np.array([len(single) - 1])
            one = percentiles(lambda m=model, x=single, r=last_row: chronos_rows(m, x, r),
                              args.repeats)
        else:
            one = percentiles(lambda m=model, x=single: base_prediction(m, x), args.repeats)
        many = percentiles(lambda m=model, x=batch: base_prediction(m, x), repeats_batch)
        latency[name] = {"context_rows": context, "single": one,
                         "batch": {**many, "rows": len(batch),
                                   "per_row_ms": many["p50_ms"] / len(batch)}}

    last = percentiles(lambda: ensemble.predict(window, rows="last"), args.repeats)
    ns = pd.DatetimeIndex(window[ensemble.time_column]).as_unit("ns").asi8
    values = window[ensemble.feature_columns].to_numpy(dtype=np.float64)
    key = str(window[ensemble.series_column].iloc[-1])
    served = percentiles(lambda: ensemble.predict_last(key, ns, values, horizons=[horizon]),
                         args.repeats)
    latency["ensemble_policy_horizon"] = {"context_rows": ensemble.window_rows,
                                          "single": served, "horizon": horizon}
    every = percentiles(lambda: ensemble.predict(window, rows="all"), max(10, args.repeats // 10))
    latency["ensemble"] = {"context_rows": ensemble.window_rows, "single": last}
    latency["ensemble_all_rows"] = {"context_rows": ensemble.window_rows, "single": every,
                                    "rows": len(window)}
    # as the signal service runs it: members prepared for one-row calls (Chronos-2 traced)
    accelerated = ensemble.accelerate()
    traced = percentiles(lambda: ensemble.predict(window, rows="last"), args.repeats)
    latency["ensemble_accelerated"] = {"context_rows": ensemble.window_rows, "single": traced,
                                       "accelerated": accelerated}

    pyfunc_stats = None
    try:
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
        pyfunc = mlflow.pyfunc.load_model(f"models:/{params.ensemble.registered_model}@champion")
        torch.set_num_threads(1)
        naive = window.copy()
        times = naive[ensemble.time_column]
        naive[ensemble.time_column] = times.dt.tz_convert("UTC").dt.tz_localize(None)
        pyfunc_stats = percentiles(lambda: pyfunc.predict(naive), args.repeats)
        latency["ensemble_pyfunc"] = {"context_rows": ensemble.window_rows, "single": pyfunc_stats}
    except Exception as exc:  # noqa: BLE001 - the registry is optional for the benchmark
        latency["ensemble_pyfunc"] = {"error": f"{type(exc).__name__}: {exc}"}

    training = training_times(root, list(params.models.run))
    result = {
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "threads": 1,
                    "torch": torch.__version__},
        "series": series,
        "window_rows": ensemble.window_rows,
        "latency": latency,
        "ratio_last_row_to_all_rows": last["p50_ms"] / every["p50_ms"],
        "target_ensemble_single_row_p99_ms": TARGET_MS,
        "ensemble_single_row_p99_ms": last["p99_ms"],
        "meets_target": last["p99_ms"] < TARGET_MS,
        "ensemble_accelerated_single_row_p99_ms": traced["p99_ms"],
        "training": training.to_dict(orient="records"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print("| model | single row p50 ms | single row p99 ms | batch per-row ms |")
    print("|---|---|---|---|")
    for name, entry in latency.items():
        if "single" not in entry:
            print(f"| {name} | {entry.get('error', '')} | | |")
            continue
        single = entry["single"]
        batch = entry.get("batch", {}).get("per_row_ms")
        print(f"| {name} | {single['p50_ms']:.2f} | {single['p99_ms']:.2f} | "
              f"{'' if batch is None else f'{batch:.4f}'} |")
    print(f"\nensemble single-row p99 {last['p99_ms']:.1f} ms (target < {TARGET_MS:.0f} ms): "
          f"{'met' if result['meets_target'] else 'NOT met'}; last-row path / all-rows path = "
          f"{result['ratio_last_row_to_all_rows']:.2f}; as served (accelerated: "
          f"{', '.join(accelerated) or 'none'}) p99 {traced['p99_ms']:.1f} ms")
    summary = training.groupby("model")[["fit_s", "predict_s"]].agg(["mean", "max"]).round(1)
    print("\ntraining time per fold (seconds, from the dvc repro run):")
    print(summary.to_string())


if __name__ == "__main__":
    main()
