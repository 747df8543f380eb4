"""Run every benchmark of the project venv in one go (`make bench`).

bench_backtest.py needs its own venv with the anchors (backtesting.py, vectorbt): see its header.
It is run here only when `.venv-bench/` exists.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_VENV = ["bench_features.py", "bench_ingest.py", "bench_models.py", "bench_serving.py",
                "bench_trader.py", "bench_stream.py", "bench_pipeline.py", "bench_scale_out.py"]


def main() -> int:
    failed = []
    for name in PROJECT_VENV:
        if not (HERE / name).exists():
            continue
        print(f"\n## {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], check=False).returncode != 0:
            failed.append(name)
    bench_python = HERE.parent / ".venv-bench" / "bin" / "python"
    if bench_python.exists():
        print("\n## bench_backtest.py", flush=True)
        if subprocess.run(
            [str(bench_python), str(HERE / "bench_backtest.py")], check=False
        ).returncode:
            failed.append("bench_backtest.py")
    else:
        print("\n(bench_backtest.py skipped: create .venv-bench as described in its header)")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
