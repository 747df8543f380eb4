"""Wall time of `dvc repro` from a clean state on the bundled data, and of a no-op `dvc repro`.

One command: ``python bench/bench_pipeline.py`` (from the repo root, in the project venv). It copies
the project's pipeline files into a temporary folder (a clean state: no outputs, no DVC cache),
runs ``dvc repro`` there twice and writes ``bench/results/pipeline.json`` plus a table. The
alternative it is measured against is the no-op run of the same pipeline (the ratio shows what
DVC's caching saves).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COPY = [
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    "feature_repo",
    "flows",
    "expectations",
    "data/sample",
]


def _copy_project(target: Path) -> None:
    for name in COPY:
        src = ROOT / name
        dst = target / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "uncommitted"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    (target / "src").symlink_to(ROOT / "src")


def _timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="candlecast-bench-") as tmp:
        project = Path(tmp)
        _copy_project(project)
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=project, check=True)
        subprocess.run(
            [str(BIN / "dvc"), "config", "core.analytics", "false"], cwd=project, check=True
        )
        clean, out = _timed([str(BIN / "dvc"), "repro"], project)
        stages = re.findall(r"Running stage '([^']+)'", out)
        noop, _ = _timed([str(BIN / "dvc"), "repro"], project)
    result = {
        "benchmark": "pipeline",
        "cpus": os.cpu_count(),
        "stages": stages,
        "clean_repro_s": round(clean, 1),
        "noop_repro_s": round(noop, 1),
        "ratio_clean_to_noop": round(clean / noop, 1),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| run | seconds |\n|---|---|")
    print(f"| `dvc repro`, clean state ({len(stages)} stages) | {result['clean_repro_s']} |")
    print(f"| `dvc repro`, no-op | {result['noop_repro_s']} |")


if __name__ == "__main__":
    main()
