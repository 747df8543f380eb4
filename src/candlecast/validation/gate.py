"""The validation gate: run the GX checkpoint on a candle table, split valid rows from bad ones.

Every decision comes from the GX result: bad rows are the ``unexpected_index_list`` entries
(``gx_row_id``) of the suite's ``quarantine`` rules; gaps and extreme returns come from its
``report`` rules; schema failures from its ``schema`` rules. This module only reads that result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.data.schema import CANDLE_COLUMNS, conform, timeframe_to_timedelta
from candlecast.validation.config import ValidationConfig
from candlecast.validation.context import open_candle_context
from candlecast.validation.frame import gx_frame
from candlecast.validation.suite import (
    EXTREME_RETURN_RULE,
    GAP_RULE,
    MAX_ABS_LOG_RETURN_PARAM,
    ROW_ID,
    STEPS,
)

QUARANTINE_COLUMNS: tuple[str, ...] = (
    *CANDLE_COLUMNS,
    "input_row",
    "rule",
    "reason",
    "quarantined_at",
)


@dataclass(frozen=True)
class ValidationOutcome:
    """What the gate found.

    * ``valid``: rows that broke no blocking rule, canonical columns/dtypes, input order, index
      reset.
    * ``quarantine``: one row per (bad input row, broken rule): the candle columns, ``input_row``
      (position in the input), ``rule`` (the expectation's rule id), ``reason`` and
      ``quarantined_at`` (UTC).
    * ``summary``: JSON-serialisable counts (see ``docs/validation.md``).
    * ``gx_result``: the GX validation result as a JSON-serialisable dict.
    """

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict[str, Any]
    gx_result: dict[str, Any] = field(repr=False)


class ValidationFailed(ValueError):
    """The table was rejected. ``summary``/``gx_result`` (and ``outcome`` when rows could be
    judged, i.e. on a threshold breach) are attached so the stage can still write them."""

    def __init__(
        self,
        message: str,
        summary: dict[str, Any],
        gx_result: dict[str, Any],
        outcome: ValidationOutcome | None = None,
    ) -> None:
        super().__init__(message)
        self.summary = summary
        self.gx_result = gx_result
        self.outcome = outcome

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable (orchestrators ship exceptions between processes) despite the extra args
        return (self.__class__, (str(self), self.summary, self.gx_result, self.outcome))


class CandleSchemaError(ValidationFailed):
    """Columns or dtypes are wrong, so rows cannot be judged one by one."""


@dataclass(frozen=True)
class _RuleResult:
    rule: str
    action: str
    description: str
    expectation: str
    column: str | None
    success: bool
    result: dict[str, Any]
    exception: str | None


def _json_safe(value: Any) -> Any:
    """Plain-Python, JSON-serialisable copy (numpy scalars, NaN -> None, timestamps -> ISO)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, datetime | pd.Timestamp):
            return obj.isoformat()
        return str(obj)

    def clean(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    return clean(json.loads(json.dumps(value, default=default)))


def _exception_message(info: Any) -> str | None:
    """GX puts one exception dict, or a dict of them keyed by metric, in ``exception_info``."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    messages = [_exception_message(v) for v in info.values()]
    found = [m for m in messages if m]
    return "; ".join(found) if found else None


def _rule_results(gx_result: dict[str, Any]) -> list[_RuleResult]:
    out = []
    for item in gx_result["results"]:
        config = item["expectation_config"]
        meta = config.get("meta") or {}
        out.append(
            _RuleResult(
                rule=str(meta.get("rule", config["type"])),
                action=str(meta.get("action", "quarantine")),
                description=str(config.get("description") or config["type"]),
                expectation=str(config["type"]),
                column=config.get("kwargs", {}).get("column"),
                success=bool(item["success"]),
                result=item.get("result") or {},
                exception=_exception_message(item.get("exception_info")),
            )
        )
    return out


def _unexpected_rows(rule: _RuleResult) -> list[dict[str, Any]]:
    """The rule's offending rows (``gx_row_id`` plus the values GX looked at); never partial."""
    entries = rule.result.get("unexpected_index_list") or []
    count = int(rule.result.get("unexpected_count") or 0)
    if len(entries) != count or any(ROW_ID not in e for e in entries):
        raise RuntimeError(
            f"GX result for rule {rule.rule!r} lists {len(entries)} of {count} unexpected rows "
            f"by {ROW_ID}; the checkpoint must use result_format COMPLETE with "
            f"unexpected_index_column_names=[{ROW_ID!r}]"
        )
    return entries


def _column_problem(r: _RuleResult) -> tuple[str, list[str]]:
    """Message for the ``columns_canonical`` rule and the canonical columns it found missing."""
    observed = r.result.get("observed_value")
    expected = list(CANDLE_COLUMNS)
    if r.exception or not isinstance(observed, list):
        return f"{r.rule}: GX could not evaluate it ({r.exception})", []
    got = [c for c in observed if not str(c).startswith("gx_")]
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    message = (
        f"{r.rule}: columns {got}, expected {expected}"
        + (f"; missing {missing}" if missing else "")
        + (f"; unexpected {extra}" if extra else "")
    )
    return message, missing


def _schema_message(failed: list[_RuleResult]) -> str:
    parts: list[str] = []
    missing: list[str] = []
    for r in failed:
        if r.rule == "columns_canonical":
            message, missing = _column_problem(r)
            parts.insert(0, message)
    for r in failed:
        if r.rule == "columns_canonical" or (r.column is not None and r.column in missing):
            continue  # the column problem is already named
        observed = r.result.get("observed_value")
        if r.exception:
            parts.append(f"{r.rule}: GX could not evaluate it ({r.exception})")
        elif observed is not None:
            parts.append(f"{r.rule}: {r.description}, observed {observed}")
        else:
            count = r.result.get("unexpected_count")
            parts.append(f"{r.rule}: {r.description}; {count} values are not")
    return "candle table schema check failed: " + "; ".join(parts)


def _reason(rule: _RuleResult, entry: Mapping[str, Any]) -> str:
    observed = ", ".join(f"{k}={v}" for k, v in entry.items() if k != ROW_ID)
    return f"{rule.description} [{rule.expectation}]" + (
        f"; observed {observed}" if observed else ""
    )


def _gap_report(rule: _RuleResult | None, candles: pd.DataFrame) -> dict[str, Any]:
    gaps = []
    for entry in _unexpected_rows(rule) if rule is not None else []:
        row = candles.iloc[int(entry[ROW_ID])]
        steps = float(entry[STEPS])
        seconds = steps * timeframe_to_timedelta(str(row["timeframe"])).total_seconds()
        gaps.append(
            {
                "series": f"{row['exchange']}:{row['symbol']}:{row['timeframe']}",
                "resumes_at": pd.Timestamp(row["timestamp"]).isoformat(),
                "input_row": int(entry[ROW_ID]),
                "missing_candles": max(int(round(steps)) - 1, 0),
                "seconds": seconds,
            }
        )
    largest = max(gaps, key=lambda g: g["seconds"]) if gaps else None
    return {
        "gap_count": len(gaps),
        "missing_candles": sum(g["missing_candles"] for g in gaps),
        "largest_gap_seconds": largest["seconds"] if largest else 0.0,
        "largest_gap_resumes_at": largest["resumes_at"] if largest else None,
        "gaps": gaps,
    }


def _outlier_report(rule: _RuleResult | None, candles: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for entry in _unexpected_rows(rule) if rule is not None else []:
        row = candles.iloc[int(entry[ROW_ID])]
        out.append(
            {
                "input_row": int(entry[ROW_ID]),
                "timestamp": pd.Timestamp(row["timestamp"]).isoformat(),
                "abs_log_return": float(next(v for k, v in entry.items() if k != ROW_ID)),
            }
        )
    return out


def _quarantine_table(
    candles: pd.DataFrame, flagged: list[tuple[int, str, str]], now: pd.Timestamp
) -> pd.DataFrame:
    if not flagged:
        empty = conform(candles.iloc[0:0])
        for col, dtype in (("input_row", "int64"), ("rule", object), ("reason", object)):
            empty[col] = pd.Series(dtype=dtype)
        empty["quarantined_at"] = pd.Series(dtype="datetime64[ns, UTC]")
        return empty.loc[:, list(QUARANTINE_COLUMNS)]
    rows = [r for r, _, _ in flagged]
    table = conform(candles.iloc[rows])
    table["input_row"] = np.asarray(rows, dtype="int64")
    table["rule"] = [rule for _, rule, _ in flagged]
    table["reason"] = [reason for _, _, reason in flagged]
    table["quarantined_at"] = now
    table["quarantined_at"] = table["quarantined_at"].astype("datetime64[ns, UTC]")
    return table.loc[:, list(QUARANTINE_COLUMNS)]


def _utc(now: datetime | pd.Timestamp | None) -> pd.Timestamp:
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if stamp.tzinfo is None:
        raise ValueError(f"quarantined_at time {stamp} must be timezone-aware")
    return stamp.tz_convert("UTC")


def validate_candles(
    candles: pd.DataFrame,
    config: ValidationConfig,
    context_root: str | Path,
    *,
    now: datetime | pd.Timestamp | None = None,
) -> ValidationOutcome:
    """Validate ``candles`` with the stored GX checkpoint under ``context_root``.

    Raises ``CandleSchemaError`` if columns/dtypes are wrong and ``ValidationFailed`` if more than
    ``config.max_bad_fraction`` of the rows break a blocking rule (summary, GX result and the
    outcome are attached). Otherwise returns the valid rows and the quarantine; nothing is
    dropped silently: ``len(valid) + quarantine.input_row.nunique() == len(candles)``.
    """
    if not isinstance(candles, pd.DataFrame):
        raise TypeError(f"candles must be a pandas DataFrame, got {type(candles).__name__}")
    stamp = _utc(now)
    frame = gx_frame(candles)
    gx = open_candle_context(context_root)
    result = gx.checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters={MAX_ABS_LOG_RETURN_PARAM: config.max_abs_log_return},
    )
    (validation,) = result.run_results.values()
    gx_result = _json_safe(validation.to_json_dict())
    rules = _rule_results(gx_result)
    n_rows = len(frame)
    base = {"rows": n_rows, "gx_success": bool(gx_result["success"])}

    schema_failed = [r for r in rules if r.action == "schema" and (not r.success or r.exception)]
    if schema_failed:
        failed = {**base, "success": False, "schema_errors": [r.rule for r in schema_failed]}
        raise CandleSchemaError(_schema_message(schema_failed), failed, gx_result)
    broken = [r for r in rules if r.exception]
    if broken:
        detail = "; ".join(f"{r.rule}: {r.exception}" for r in broken)
        failed = {**base, "success": False, "rule_errors": [r.rule for r in broken]}
        raise ValidationFailed(f"GX could not evaluate candle rules: {detail}", failed, gx_result)

    by_rule = {r.rule: r for r in rules}
    outliers = _outlier_report(by_rule.get(EXTREME_RETURN_RULE), frame)
    blocking = [
        r
        for r in rules
        if r.action == "quarantine"
        or (r.rule == EXTREME_RETURN_RULE and config.quarantine_extreme_returns)
    ]
    flagged: list[tuple[int, str, str]] = []
    rule_counts: dict[str, int] = {}
    for rule in blocking:
        entries = _unexpected_rows(rule)
        if entries:
            rule_counts[rule.rule] = len(entries)
        flagged += [(int(e[ROW_ID]), rule.rule, _reason(rule, e)) for e in entries]
    order = {r.rule: i for i, r in enumerate(blocking)}
    flagged = sorted(set(flagged), key=lambda f: (f[0], order[f[1]], f[2]))
    bad_rows = sorted({row for row, _, _ in flagged})

    bad_mask = np.zeros(n_rows, dtype=bool)
    bad_mask[bad_rows] = True
    valid = conform(candles.reset_index(drop=True).loc[~bad_mask])
    quarantine = _quarantine_table(candles.reset_index(drop=True), flagged, stamp)
    bad_fraction = len(bad_rows) / n_rows if n_rows else 0.0
    summary: dict[str, Any] = {
        **base,
        "valid_rows": len(valid),
        "bad_rows": len(bad_rows),
        "bad_fraction": bad_fraction,
        "max_bad_fraction": config.max_bad_fraction,
        "quarantine_rows": len(quarantine),
        "rule_counts": rule_counts,
        **_gap_report(by_rule.get(GAP_RULE), frame),
        "outlier_count": len(outliers),
        "outlier_action": "quarantined" if config.quarantine_extreme_returns else "flagged",
        "max_abs_log_return": config.max_abs_log_return,
        "outliers": outliers,
        "within_threshold": bad_fraction <= config.max_bad_fraction,
        "success": not bad_rows,
        "validated_at": stamp.isoformat(),
    }
    summary = _json_safe(summary)
    outcome = ValidationOutcome(
        valid=valid, quarantine=quarantine, summary=summary, gx_result=gx_result
    )
    if not summary["within_threshold"]:
        counts = ", ".join(f"{rule}={count}" for rule, count in rule_counts.items())
        raise ValidationFailed(
            f"candle validation failed: {len(bad_rows)} of {n_rows} rows ({bad_fraction:.2%}) "
            f"broke blocking rules, above max_bad_fraction={config.max_bad_fraction:.2%}; "
            f"per rule: {counts}",
            summary,
            gx_result,
            outcome,
        )
    return outcome
