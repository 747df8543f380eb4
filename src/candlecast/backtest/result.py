"""What a backtest returns: per-bar curves, fills, trades (built lazily) and decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from candlecast.backtest.ledger import FillLog, fills_frame, trades_frame

DECISION_COLUMNS = ("timestamp", "bar", "action", "reason", "side", "qty", "notes", "detail")


class EquityCurve:
    """What a result with ``name``, ``timestamps`` and per-bar ``equity`` offers (one
    series' backtest and a portfolio book alike)."""

    name: str
    timestamps: pd.DatetimeIndex
    equity: np.ndarray

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])

    @property
    def equity_series(self) -> pd.Series:
        return pd.Series(self.equity, index=self.timestamps, name=self.name)


@dataclass
class BacktestResult(EquityCurve):
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

    @cached_property
    def fills(self) -> pd.DataFrame:
        return fills_frame(self.log, self.timestamps)

    @cached_property
    def trades(self) -> pd.DataFrame:
        return trades_frame(self.log, self.timestamps, self.close, self.funding_paid)

    @cached_property
    def decisions(self) -> pd.DataFrame:
        return decisions_frame(self.decision_rows, self.timestamps)

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


def decisions_frame(rows: list[tuple], timestamps: pd.DatetimeIndex,
                    keys: tuple[str, ...] = ("bar",)) -> pd.DataFrame:
    """Decision rows as the loop recorded them (``keys``, then action, reason, side, qty,
    notes, detail) as strings: ``notes`` a tuple of reasons joined, ``detail`` a string or the
    float level of a resting stop/target; the bar's timestamp first."""
    k = len(keys)
    text = [(*row[:k], str(row[k]), str(row[k + 1]), row[k + 2], row[k + 3],
             row[k + 4] if isinstance(row[k + 4], str) else ",".join(map(str, row[k + 4])),
             row[k + 5] if isinstance(row[k + 5], str) else f"level {row[k + 5]:.6g}")
            for row in rows]
    frame = pd.DataFrame(text, columns=[*keys, *DECISION_COLUMNS[2:]])
    bars = frame["bar"].to_numpy(dtype=np.int64)
    frame.insert(0, "timestamp", timestamps[bars] if len(frame) else timestamps[:0])
    return frame
