"""A miniature copy of the project (real data, cut short) that the pipeline tests run in."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import yaml

from candlecast.config import deep_merge

ROWS = 3000
SYMBOLS = ["BTC/USD", "ETH/USD"]


def make_mini_project(repo_root: Path, target: Path, overrides: dict | None = None,
                      symbols: list[str] | None = None) -> Path:
    """Copy the project's pipeline files into ``target`` with the first ``ROWS`` real candles
    of ``symbols`` (default :data:`SYMBOLS`)."""
    symbols = list(symbols or SYMBOLS)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore", "pyproject.toml", "README.md", "requirements.lock"):
        shutil.copy(repo_root / name, target / name)
    # the package stage: the BentoML service source (its outputs are written next to it)
    (target / "bentos").mkdir()
    for name in ("service.py", "bentofile.yaml", ".gitignore"):
        shutil.copy(repo_root / "bentos" / name, target / "bentos" / name)
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
    for symbol in symbols:
        name = f"{symbol.split('/')[0]}.csv.gz"
        lines = gzip.decompress((repo_root / "data/sample/bitfinex_30m" / name).read_bytes())
        head = b"\n".join(lines.split(b"\n")[: ROWS + 1]) + b"\n"
        (sample / name).write_bytes(gzip.compress(head, mtime=0))
    # the source tree is a DVC dependency of the stages; link it so paths resolve
    (target / "src").symlink_to(repo_root / "src")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["ingest"]["symbols"] = symbols
    params["train"]["lightgbm"]["n_estimators"] = 60
    params["train"]["lightgbm"]["min_child_samples"] = 50
    # the model zoo runs the `quick` profile: the same code, sized for ROWS candles per series;
    # by default only the two cheapest models (every zoo stage is a Prefect flow under
    # `dvc repro`); tests of the zoo itself ask for all of them through `overrides`
    params = deep_merge(params, yaml.safe_load((repo_root / "profiles" / "quick.yaml").read_text()))
    params["models"]["run"] = ["baselines", "lightgbm"]
    params = deep_merge(params, overrides or {})
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target
