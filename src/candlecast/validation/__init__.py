"""The Great Expectations (1.x) validation gate for candle tables.

``validate_candles(candles, config, context_root)`` runs the stored GX checkpoint on a candle
table and returns the valid rows, a quarantine of bad rows (from the GX result), a summary and
the GX result. See ``docs/validation.md``.
"""

from candlecast.validation.config import ValidationConfig
from candlecast.validation.context import (
    CandleContext,
    build_data_docs,
    open_candle_context,
    save_candle_suite,
    stored_suite_json,
)
from candlecast.validation.gate import (
    QUARANTINE_COLUMNS,
    CandleSchemaError,
    ValidationFailed,
    ValidationOutcome,
    validate_candles,
)
from candlecast.validation.io import write_json_atomic, write_validation_outcome
from candlecast.validation.suite import build_candle_suite

__all__ = [
    "QUARANTINE_COLUMNS",
    "CandleContext",
    "CandleSchemaError",
    "ValidationConfig",
    "ValidationFailed",
    "ValidationOutcome",
    "build_candle_suite",
    "build_data_docs",
    "open_candle_context",
    "save_candle_suite",
    "stored_suite_json",
    "validate_candles",
    "write_json_atomic",
    "write_validation_outcome",
]
