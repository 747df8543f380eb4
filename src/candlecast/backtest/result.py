"""What a backtest returns: per-bar curves, fills, trades (built lazily) and decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from candlecast.backtest.ledger import FillLog, fills_frame, trades_frame

DECISION_COLUMNS = ("timestamp", "bar", "action", "reason", "side", "qty", "notes", "detail")


@dataclass
class BacktestResult:
    """One strategy's backtest on one symbol.

    ``equity``/``position``/``funding_paid`` are per bar at the close; ``position`` is signed
    base units. ``fills``, ``trades`` and ``decisions`` are DataFrames built on first access.
    ``decision_rows`` are ``(bar, action, reason, side, qty, notes, detail)`` as the loop
    recorded them (``notes`` a tuple of reasons; ``detail`` a string, or the float level of a
    resting stop/target that was hit); ``decisions`` turns them into strings.
    """

    name: str
    symbol: str
    timestamps: pd.DatetimeIndex
    close: np.ndarray
    equity: np.ndarray
    position: np.ndarray
    funding_paid: np.ndarray
    initial_equity: float
    bars_per_year: float
    log: FillLog = field(repr=False)
    decision_rows: list[tuple] = field(default_factory=list, repr=False)

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])

    @property
    def equity_series(self) -> pd.Series:
        return pd.Series(self.equity, index=self.timestamps, name=self.name)

    @cached_property
    def fills(self) -> pd.DataFrame:
        return fills_frame(self.log, self.timestamps)

    @cached_property
    def trades(self) -> pd.DataFrame:
        return trades_frame(self.log, self.timestamps, self.close, self.funding_paid)

    @cached_property
    def decisions(self) -> pd.DataFrame:
        rows = [(b, str(a), str(r), sd, q, nt if isinstance(nt, str) else ",".join(map(str, nt)),
                 dt if isinstance(dt, str) else f"level {dt:.6g}")
                for b, a, r, sd, q, nt, dt in self.decision_rows]
        frame = pd.DataFrame(rows, columns=list(DECISION_COLUMNS[1:]))
        bars = frame["bar"].to_numpy(dtype=np.int64)
        frame.insert(0, "timestamp", self.timestamps[bars] if len(frame) else self.timestamps[:0])
        return frame

    @property
    def costs(self) -> dict[str, float]:
        """Money paid in fees, in spread/slippage/impact, and in funding (net), and the total."""
        fees = float(np.sum(self.log.fee))
        slippage = float(np.sum(self.log.slip))
        funding = float(self.funding_paid.sum())
        return {"fees": fees, "slippage": slippage, "funding": funding,
                "total": fees + slippage + funding}

    @property
    def traded_notional(self) -> float:
        return float(np.dot(self.log.qty, self.log.price)) if len(self.log) else 0.0
