"""The candle expectation suite, built from code.

Every expectation carries ``meta = {"rule": <id>, "action": <action>}`` and a human ``description``:

* ``action="schema"``: table-level (columns, dtypes). A failure means the table cannot be
  checked row by row; the gate raises ``CandleSchemaError``.
* ``action="quarantine"``: row-level. GX lists the offending rows (``unexpected_index_list``
  keyed by ``gx_row_id``) and the gate moves them to the quarantine.
* ``action="report"``: row-level findings that are not bad rows (gaps, extreme returns); the
  gate counts and reports them, the rows stay valid.

Three helper columns are appended to the frame GX sees (``frame.py`` computes them, pure pandas;
GX makes every pass/fail decision):

* ``gx_row_id``: the row's position in the input, GX's ``unexpected_index_column_names``.
* ``gx_steps_since_previous``: time since the latest EARLIER timestamp of the same series
  (running maximum, so a row after an out-of-order one is judged against the true front), in
  units of the row's timeframe. 1 is regular spacing, >1 a gap, <=0 out of order or a repeat,
  between 0 and 1 spacing below the timeframe. NaN for a series' first row.
* ``gx_abs_log_return``: ``|log(close / previous close)|`` within the series, NaN if undefined.

OHLC consistency uses GX column-pair expectations (``high >= open``, ``high >= close``,
``open >= low``, ``close >= low``, each ``or_equal``, rows with a missing side skipped so a NaN
is reported only by its not-null rule) rather than a derived ``max(open, close)`` column: four
plain GX rules, each naming the pair it compares. The extreme-return bound is a GX suite
parameter (``$PARAMETER: max_abs_log_return``) filled in at run time from ``ValidationConfig``,
so the stored suite does not depend on the config.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Literal

from candlecast.data.schema import CANDLE_COLUMNS, OHLCV_COLUMNS, PRICE_COLUMNS, SERIES_COLUMNS

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

SUITE_NAME = "candles"
ROW_ID = "gx_row_id"
STEPS = "gx_steps_since_previous"
ABS_LOG_RETURN = "gx_abs_log_return"
DERIVED_COLUMNS: tuple[str, ...] = (ROW_ID, STEPS, ABS_LOG_RETURN)
GX_COLUMNS: tuple[str, ...] = (*CANDLE_COLUMNS, *DERIVED_COLUMNS)
MAX_ABS_LOG_RETURN_PARAM = "max_abs_log_return"
# Expectation ids are derived from the rule id, so re-saving an unchanged suite rewrites
# byte-identical JSON (GX would otherwise mint fresh random ids on every save).
_ID_NAMESPACE = uuid.UUID("6f1c2a4e-5b1d-4c7e-9a53-0c1e2d3f4a5b")

Action = Literal["schema", "quarantine", "report"]

# Rule ids the gate treats specially; all others are plain quarantine/schema rules.
GAP_RULE = "timestamp_gap"
EXTREME_RETURN_RULE = "extreme_log_return"

# Same patterns as candlecast.data.schema (ccxt ids, unified symbols, fixed-length timeframes).
_PATTERNS = {
    "exchange": r"^[a-z0-9_]+$",
    "symbol": r"^[A-Z0-9]+/[A-Z0-9]+(?::[A-Z0-9]+)?$",
    "timeframe": r"^[1-9][0-9]*[smhdw]$",
}


def _meta(rule: str, action: Action) -> dict[str, Any]:
    return {"rule": rule, "action": action}


def candle_expectations() -> list[Any]:
    """The suite's expectations, in a fixed order (schema first, then row rules, then reports)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity
    from great_expectations.expectations.row_conditions import Column

    def of_type(column: str, type_: str, description: str) -> Any:
        return gxe.ExpectColumnValuesToBeOfType(
            column=column, type_=type_, meta=_meta(f"{column}_dtype", "schema"),
            description=description,
        )

    out: list[Any] = [
        gxe.ExpectTableColumnsToMatchOrderedList(
            column_list=list(GX_COLUMNS),
            meta=_meta("columns_canonical", "schema"),
            description="columns are exactly the canonical candle columns, in order "
            "(plus the gate's gx_* helper columns)",
        ),
        of_type("timestamp", "Timestamp", "timestamp must be a timezone-aware datetime column"),
    ]
    out += [of_type(col, "float64", f"{col} must be float64") for col in OHLCV_COLUMNS]
    out += [of_type(col, "str", f"{col} must hold strings") for col in SERIES_COLUMNS]
    out += [
        gxe.ExpectColumnValuesToNotBeNull(
            column=col, meta=_meta(f"{col}_not_null", "quarantine"), description=f"{col} is missing"
        )
        for col in CANDLE_COLUMNS
    ]
    out += [
        gxe.ExpectColumnValuesToBeBetween(
            column=col,
            min_value=0,
            strict_min=True,
            meta=_meta(f"{col}_positive", "quarantine"),
            description=f"{col} must be > 0",
        )
        for col in PRICE_COLUMNS
    ]
    out.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="volume",
            min_value=0,
            meta=_meta("volume_non_negative", "quarantine"),
            description="volume must be >= 0",
        )
    )
    for a, b, rule in (
        ("high", "open", "high_ge_open"),
        ("high", "close", "high_ge_close"),
        ("open", "low", "low_le_open"),
        ("close", "low", "low_le_close"),
    ):
        out.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a,
                column_B=b,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                meta=_meta(rule, "quarantine"),
                description=f"{a} must be >= {b}",
            )
        )
    out += [
        gxe.ExpectColumnValuesToMatchRegex(
            column=col,
            regex=pattern,
            meta=_meta(f"{col}_format", "quarantine"),
            description=f"{col} must match {pattern}",
        )
        for col, pattern in _PATTERNS.items()
    ]
    out += [
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=[*SERIES_COLUMNS, "timestamp"],
            meta=_meta("timestamp_unique_per_series", "quarantine"),
            description="timestamp must be unique within its series (every copy is quarantined)",
        ),
        # three rules on the steps column, alike in shape on purpose: each is its own
        # expectation with its own rule id, bound and severity (quarantine or report)
        gxe.ExpectColumnValuesToBeBetween(
            column=STEPS,
            min_value=0,
            strict_min=True,
            meta=_meta("timestamp_increasing", "quarantine"),
            description="timestamp must be later than every earlier timestamp of its series "
            "(steps since previous, in timeframes)",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=STEPS,
            min_value=1,
            row_condition=Column(STEPS) > 0,
            meta=_meta("spacing_not_below_timeframe", "quarantine"),
            description="timestamp must be at least one timeframe after the previous one "
            "(steps since previous, in timeframes)",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=STEPS,
            max_value=1,
            severity=FailureSeverity.WARNING,
            meta=_meta(GAP_RULE, "report"),
            description="candles are one timeframe apart; larger steps are gaps "
            "(reported, not quarantined)",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=ABS_LOG_RETURN,
            max_value={"$PARAMETER": MAX_ABS_LOG_RETURN_PARAM},
            severity=FailureSeverity.WARNING,
            meta=_meta(EXTREME_RETURN_RULE, "report"),
            description="|log(close / previous close)| is within max_abs_log_return "
            "(extreme returns are flagged)",
        ),
    ]
    return out


def build_candle_suite() -> ExpectationSuite:
    """A fresh (unsaved) candle suite from code; ``context.save_candle_suite`` stores it."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=candle_expectations(),
        meta={"owner": "candlecast.validation.suite", "columns": list(CANDLE_COLUMNS)},
    )
    rules = [(exp.meta or {})["rule"] for exp in suite.expectations]
    if len(rules) != len(set(rules)) or len(rules) != len(candle_expectations()):
        raise RuntimeError(f"candle suite rule ids must be unique, got {rules}")
    for exp in suite.expectations:
        exp.id = str(uuid.uuid5(_ID_NAMESPACE, f"{SUITE_NAME}/{(exp.meta or {})['rule']}"))
    return suite


def comparable_suite(suite_json: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stored suite that must equal the code: name, expectations (with their
    rule-derived ids) and meta, minus the GX version stamp and the suite's own storage id."""
    meta = {k: v for k, v in (suite_json.get("meta") or {}).items() if "version" not in k}
    expectations = [
        {k: v for k, v in exp.items() if k != "rendered_content"}
        for exp in suite_json["expectations"]
    ]
    return {"name": suite_json["name"], "meta": meta, "expectations": expectations}
