"""The stage edge: write a gate outcome to disk (kept apart from the pure gate logic)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from candlecast.data.store import write_parquet_atomic
from candlecast.validation.gate import ValidationFailed, ValidationOutcome


def write_json_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` as indented, key-sorted JSON via a temp file and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.write("\n")
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_validation_outcome(
    outcome: ValidationOutcome | ValidationFailed,
    *,
    valid_path: str | Path | None,
    quarantine_path: str | Path | None,
    result_path: str | Path | None,
    summary_path: str | Path | None,
) -> None:
    """Write the valid table and quarantine (Parquet), the GX result and summary (JSON).

    Pass a ``ValidationFailed`` to record a rejected table: its summary and GX result are
    written, and its quarantine when rows were judged; the valid table is never written for a
    rejected table (a stale one at ``valid_path`` is left alone). A path of ``None`` skips that
    file.
    """
    if isinstance(outcome, ValidationFailed):
        summary, gx_result = outcome.summary, outcome.gx_result
        judged = outcome.outcome
        valid = None
        quarantine = judged.quarantine if judged is not None else None
    else:
        summary, gx_result = outcome.summary, outcome.gx_result
        valid, quarantine = outcome.valid, outcome.quarantine
    if valid is not None and valid_path is not None:
        write_parquet_atomic(valid, Path(valid_path))
    if quarantine is not None and quarantine_path is not None:
        write_parquet_atomic(quarantine, Path(quarantine_path))
    if result_path is not None:
        write_json_atomic(gx_result, result_path)
    if summary_path is not None:
        write_json_atomic(summary, summary_path)
