"""A miniature copy of the project (real data, cut short) that the pipeline tests run in."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import yaml

ROWS = 3000
SYMBOLS = ["BTC/USD", "ETH/USD"]


def make_mini_project(repo_root: Path, target: Path, overrides: dict | None = None) -> Path:
    """Copy the project's pipeline files into ``target`` with the first ``ROWS`` real candles."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(repo_root / name, target / name)
    for folder in ("feature_repo", "flows"):
        shutil.copytree(
            repo_root / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copytree(
        repo_root / "expectations",
        target / "expectations",
        ignore=shutil.ignore_patterns("uncommitted"),
    )
    sample = target / "data" / "sample" / "bitfinex_30m"
    sample.mkdir(parents=True)
    for symbol in SYMBOLS:
        name = f"{symbol.split('/')[0]}.csv.gz"
        lines = gzip.decompress((repo_root / "data/sample/bitfinex_30m" / name).read_bytes())
        head = b"\n".join(lines.split(b"\n")[: ROWS + 1]) + b"\n"
        (sample / name).write_bytes(gzip.compress(head, mtime=0))
    # the source tree is a DVC dependency of the stages; link it so paths resolve
    (target / "src").symlink_to(repo_root / "src")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["ingest"]["symbols"] = SYMBOLS
    params["train"]["lightgbm"]["n_estimators"] = 60
    params["train"]["lightgbm"]["min_child_samples"] = 50
    for section, values in (overrides or {}).items():
        params[section].update(values)
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target
