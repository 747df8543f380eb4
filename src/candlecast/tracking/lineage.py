"""Lineage: which data, code and parameters produced a model or a report."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path


def file_digest(path: str | Path, length: int = 12) -> str:
    """Content hash of a file (or of every file under a folder, in path order)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.md5(usedforsecurity=False)
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]


def git_commit(cwd: str | Path = ".") -> str:
    """The checked-out commit (with ``-dirty`` if the work tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


@dataclass(frozen=True)
class Lineage:
    data_version: str
    params_hash: str
    git_commit: str
    feature_service: str

    def as_tags(self) -> dict[str, str]:
        return {f"lineage.{k}": v for k, v in asdict(self).items()}
