"""`validate` stage: the Great Expectations gate on every configured series.

Every series is judged first; only then is anything written, so a rejected series leaves no
half-validated store behind. Reports (summary, GX result, Data Docs) are written either way.
"""

from __future__ import annotations

import logging
import shutil

import pandas as pd

from candlecast.config import Params
from candlecast.data.store import CandleStore, write_parquet_atomic
from candlecast.pipeline.paths import Paths
from candlecast.validation import (
    ValidationFailed,
    ValidationOutcome,
    build_data_docs,
    validate_candles,
    write_json_atomic,
    write_validation_outcome,
)

log = logging.getLogger(__name__)


def _file_key(series_key: str) -> str:
    return series_key.replace("/", "-").replace(":", "_")


def run_validate(params: Params, paths: Paths) -> dict[str, object]:
    raw = CandleStore(paths.raw)
    outcomes: dict[str, ValidationOutcome] = {}
    failures: dict[str, ValidationFailed] = {}
    for series in params.ingest.series:
        candles = raw.read(series)
        if candles.empty:
            raise ValueError(
                f"no raw candles for {series.key} in {paths.raw}; run the ingest stage"
            )
        try:
            outcomes[series.key] = validate_candles(candles, params.validate_, paths.expectations)
        except ValidationFailed as failed:
            failures[series.key] = failed
        log.info("validated %s (%d rows)", series.key, len(candles))

    reports = paths.validation_reports
    if reports.exists():
        shutil.rmtree(reports)
    judged: dict[str, ValidationOutcome | ValidationFailed] = {**outcomes, **failures}
    for key, result in judged.items():
        write_validation_outcome(
            result,
            valid_path=None,
            quarantine_path=paths.quarantine / f"{_file_key(key)}.parquet",
            result_path=reports / f"{_file_key(key)}.gx_result.json",
            summary_path=reports / f"{_file_key(key)}.summary.json",
        )
    docs = build_data_docs(paths.expectations, reports / "data_docs")
    summary = {key: _metrics(result.summary) for key, result in judged.items()}
    if failures:
        details = "; ".join(f"{key}: {failed}" for key, failed in failures.items())
        raise ValueError(f"validation rejected {len(failures)} series ({details}); see {reports}")

    validated = CandleStore(paths.validated)
    for series in params.ingest.series:
        validated.replace(series, outcomes[series.key].valid)
    paths.quarantine.mkdir(parents=True, exist_ok=True)
    all_quarantined = [o.quarantine.assign(series_id=k) for k, o in outcomes.items()]
    if all_quarantined:
        write_parquet_atomic(
            pd.concat(all_quarantined, ignore_index=True), paths.quarantine / "quarantine.parquet"
        )
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json_atomic(summary, paths.metrics / "validation.json")
    log.info("Data Docs: %s", docs)
    return {"series": summary, "data_docs": str(docs)}


def _metrics(summary: dict) -> dict[str, object]:
    """The numeric part of a validation summary, for `dvc metrics show`."""
    return {k: v for k, v in summary.items() if isinstance(v, int | float | bool)} | {
        "bad_rows_by_rule": summary.get("bad_rows_by_rule", summary.get("rule_counts", {}))
    }
