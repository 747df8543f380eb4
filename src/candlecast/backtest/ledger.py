"""The bookkeeping both paths share: the fill log, the target-order step, equity and trades.

Both paths append fills here and rebuild equity, position and trades with the same functions,
so on the same fills they produce the same numbers to the last bit.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest.costs import CostModel

_TINY = 1e-12


class FillLog:
    """Append-only columns of fills; ``pos_after``/``cash_after`` make curves exact.

    While a loop appends, the numeric columns are typed arrays (``array.array``): they store
    the numbers, not Python float objects, so a long backtest does not keep hundreds of
    thousands of objects alive (which costs more time than the appends). A path that has all
    fills at once sets numpy arrays instead. Both read like sequences and convert to numpy
    without copying element by element.
    """

    __slots__ = ("bar", "cash_after", "fee", "pos_after", "price", "qty", "reason", "ref",
                 "side", "slip")

    def __init__(self) -> None:
        self.bar: Any = array("q")
        self.side: Any = array("b")
        self.qty: Any = array("d")
        self.price: Any = array("d")
        self.ref: Any = array("d")
        self.fee: Any = array("d")
        self.slip: Any = array("d")
        self.reason: Any = []
        self.pos_after: Any = array("d")
        self.cash_after: Any = array("d")  # cash from fills only (funding excluded)

    def __len__(self) -> int:
        return len(self.bar)

    def add(self, bar: int, side: int, qty: float, price: float, ref: float, fee: float,
            slip: float, reason: str, pos_after: float, cash_after: float) -> None:
        self.bar.append(bar)
        self.side.append(side)
        self.qty.append(qty)
        self.price.append(price)
        self.ref.append(ref)
        self.fee.append(fee)
        self.slip.append(slip)
        self.reason.append(reason)
        self.pos_after.append(pos_after)
        self.cash_after.append(cash_after)


def snap(pos: float, scale: float) -> float:
    """Round float dust left by closing a position back to an exact 0."""
    return 0.0 if abs(pos) <= _TINY * max(1.0, scale) else pos


def order_step(
    costs: CostModel, pos: float, target: float, ref_price: float, volume: float
) -> tuple[int, float, float, float, float] | None:
    """One bar's market-order progress from position ``pos`` toward ``target`` at the open.

    Returns ``(side, qty, price, fee, slippage)`` or ``None`` when nothing fills (already at
    target, or no volume). A reversal is one order through zero.
    """
    delta = target - pos
    if abs(delta) <= _TINY * max(1.0, abs(target), abs(pos)):
        return None
    side = 1 if delta > 0 else -1
    qty, price, fee, slip = costs.taker(side, abs(delta), ref_price, volume)
    if qty <= 0.0:
        return None
    return side, qty, price, fee, slip


def signal_reason(before: float, after: float) -> str:
    """The fill reason of a signal order: entry (from flat or adding), exit, or reverse."""
    if before == 0.0 or (after != 0.0 and (after > 0) == (before > 0) and abs(after) > abs(before)):
        return "signal_entry"
    if after == 0.0 or (after > 0) == (before > 0):
        return "signal_exit"
    return "signal_reverse"


def curves(
    n: int, log: FillLog, close: np.ndarray, initial_equity: float, funding: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bar ``(equity, position, funding_paid)`` at each close, from the fill log."""
    if len(log) == 0:
        return np.full(n, initial_equity), np.zeros(n), np.zeros(n)
    bars = np.asarray(log.bar, dtype=np.int64)
    # per bar: 1 + index of the last fill at or before it (0: none yet); bars are sorted
    last_of_bar = np.append(bars[1:] != bars[:-1], True)
    marker = np.zeros(n, dtype=np.intp)
    marker[bars[last_of_bar]] = np.flatnonzero(last_of_bar) + 1
    np.maximum.accumulate(marker, out=marker)
    position = np.concatenate([[0.0], np.asarray(log.pos_after, dtype=float)])[marker]
    cash = np.concatenate([[initial_equity], np.asarray(log.cash_after, dtype=float)])[marker]
    paid = np.zeros(n) if funding is None else position * close * funding
    if funding is not None:
        cash = cash - np.cumsum(paid)
    return cash + position * close, position, paid


def fills_frame(log: FillLog, timestamps: pd.DatetimeIndex) -> pd.DataFrame:
    bars = np.asarray(log.bar, dtype=np.int64)
    return pd.DataFrame({
        "timestamp": timestamps[bars] if len(bars) else pd.DatetimeIndex([], tz="UTC"),
        "bar": bars,
        "side": np.asarray(log.side, dtype=np.int8),
        "qty": np.asarray(log.qty, dtype=float),
        "price": np.asarray(log.price, dtype=float),
        "ref_price": np.asarray(log.ref, dtype=float),
        "fee": np.asarray(log.fee, dtype=float),
        "slippage": np.asarray(log.slip, dtype=float),
        "reason": pd.Series(log.reason, dtype=object),
        "position_after": np.asarray(log.pos_after, dtype=float),
    })


TRADE_COLUMNS = (
    "trade_id", "side", "entry_time", "exit_time", "entry_bar", "exit_bar", "bars_held", "qty",
    "entry_price", "exit_price", "gross_pnl", "fees", "slippage", "funding", "pnl", "return",
    "entry_reason", "exit_reason", "closed",
)


def trades_frame(
    log: FillLog, timestamps: pd.DatetimeIndex, close: np.ndarray, funding_paid: np.ndarray
) -> pd.DataFrame:
    """Round-trip trades from the fills: a trade opens when the position leaves 0 and closes
    when it returns to 0 (a reversal closes one trade and opens the next). Net ``pnl`` includes
    fees and funding; slippage is already inside the fill prices. A trade still open at the end
    is marked at the last close with ``closed=False`` (no exit costs)."""
    fund_cum = np.concatenate([[0.0], np.cumsum(funding_paid)])
    rows: list[tuple] = []
    pos = 0.0
    cur: dict | None = None
    for i in range(len(log)):
        side, qty, price = log.side[i], log.qty[i], log.price[i]
        fee, slip, bar = log.fee[i], log.slip[i], log.bar[i]
        after = log.pos_after[i]
        opening = qty
        if pos != 0.0 and side != (1 if pos > 0 else -1) and cur is not None:
            closing = min(qty, abs(pos))
            share = closing / qty
            cur["exit_qty"] += closing
            cur["exit_value"] += closing * price
            cur["fees"] += fee * share
            cur["slip"] += slip * share
            cur["exit_reason"] = log.reason[i]
            if after == 0.0 or (after > 0) != (pos > 0):
                rows.append(_close_trade(cur, bar, fund_cum, True))
                cur = None
            opening = qty - closing
            fee, slip = fee * (1 - share), slip * (1 - share)
        if opening > _TINY * max(1.0, qty):
            if cur is None:
                cur = {"side": side, "entry_bar": bar, "entry_qty": 0.0, "entry_value": 0.0,
                       "exit_qty": 0.0, "exit_value": 0.0, "fees": 0.0, "slip": 0.0,
                       "entry_reason": log.reason[i], "exit_reason": ""}
            cur["entry_qty"] += opening
            cur["entry_value"] += opening * price
            cur["fees"] += fee
            cur["slip"] += slip
        pos = after
    if cur is not None:
        last = len(close) - 1
        remaining = cur["entry_qty"] - cur["exit_qty"]
        cur["exit_value"] += remaining * close[last]
        cur["exit_qty"] += remaining
        cur["exit_reason"] = "open"
        rows.append(_close_trade(cur, last + 1, fund_cum, False))
    frame = pd.DataFrame(rows, columns=[c for c in TRADE_COLUMNS if c not in
                                        ("trade_id", "entry_time", "exit_time", "bars_held")])
    frame.insert(0, "trade_id", np.arange(len(frame)))
    entry_bar = frame["entry_bar"].to_numpy(dtype=np.int64)
    exit_bar = frame["exit_bar"].to_numpy(dtype=np.int64)
    frame.insert(2, "entry_time", timestamps[entry_bar] if len(frame) else timestamps[:0])
    frame.insert(3, "exit_time",
                 timestamps[np.minimum(exit_bar, len(timestamps) - 1)] if len(frame)
                 else timestamps[:0])
    frame.insert(6, "bars_held", exit_bar - entry_bar)
    return frame


def _close_trade(cur: dict, exit_bar: int, fund_cum: np.ndarray, closed: bool) -> tuple:
    side = cur["side"]
    entry_price = cur["entry_value"] / cur["entry_qty"]
    exit_price = cur["exit_value"] / cur["exit_qty"]
    gross = side * (cur["exit_value"] - cur["entry_value"])
    funding = float(fund_cum[exit_bar] - fund_cum[cur["entry_bar"]])
    pnl = gross - cur["fees"] - funding
    return (side, cur["entry_bar"], exit_bar, cur["entry_qty"], entry_price, exit_price, gross,
            cur["fees"], cur["slip"], funding, pnl, pnl / cur["entry_value"],
            cur["entry_reason"], cur["exit_reason"], closed)
