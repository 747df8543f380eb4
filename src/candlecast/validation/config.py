"""Policy for the candle validation gate (typed, frozen; composed into the top-level params)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ValidationConfig(BaseModel):
    """How strict the gate is. The rules themselves live in the GX suite (see ``suite.py``).

    * ``max_bad_fraction``: the share of input rows that may break a blocking rule before the
      whole table is rejected with ``ValidationFailed``. At or below it, bad rows are quarantined
      and the rest continues.
    * ``max_abs_log_return``: a candle whose ``|log(close / previous close)|`` (same series) is
      above this is an *extreme return*. Real crashes and squeezes exist, so by default these
      rows are only flagged and counted, not quarantined.
    * ``quarantine_extreme_returns``: set to quarantine extreme-return rows as well (they then
      count towards ``max_bad_fraction``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bad_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    max_abs_log_return: float = Field(default=0.2, gt=0.0, le=10.0)
    quarantine_extreme_returns: bool = False
