"""What the console shows, computed from plain values: pure functions, DataFrames and dicts in,
JSON-ready dicts out (times as ISO 8601 UTC strings, NaN as None). The dashboard's ``/api/state``
and the chat bot's answers are both built from these.

Times: the trader journals candles by their OPEN time; a tick's equity is marked at that
candle's close. Curves are plotted against the open time, like the backtest's curve tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from candlecast.common.time import as_utc

SIDES = {1: "buy", -1: "sell", 0: ""}


def iso(ts_ns: Any) -> str | None:
    """An integer nanosecond time (or a Timestamp) as ISO 8601 UTC, None for missing."""
    if ts_ns is None or (isinstance(ts_ns, float) and math.isnan(ts_ns)):
        return None
    if isinstance(ts_ns, int | np.integer):
        return pd.Timestamp(int(ts_ns), tz="UTC").isoformat()
    return as_utc(ts_ns).isoformat()


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, containers recursively."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    present = [c for c in columns if c in frame.columns]
    return [clean(row) for row in frame[present].to_dict("records")]


# ---------------------------------------------------------------- equity and drawdown
def thin_indices(n: int, max_points: int, keep: Iterable[int] = ()) -> np.ndarray:
    """At most about ``max_points`` evenly spaced rows of ``n``, always the first, the last and
    ``keep`` (e.g. the deepest drawdown), sorted."""
    if n <= max_points:
        return np.arange(n)
    rows = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    extra = np.asarray([k for k in keep if 0 <= k < n], dtype=np.int64)
    return np.unique(np.concatenate([rows, extra]))


def equity_curve(ticks: pd.DataFrame, max_points: int) -> dict[str, Any]:
    """The per-candle equity and its drawdown from the running peak (a fraction <= 0)."""
    if ticks.empty:
        return {"time": [], "equity": [], "drawdown": [], "points_total": 0, "thinned": False}
    equity = ticks["equity"].to_numpy(dtype=float)
    drawdown = equity / np.maximum.accumulate(equity) - 1.0
    rows = thin_indices(len(equity), max_points, keep=[int(np.argmin(drawdown))])
    ts = ticks["ts"].to_numpy(dtype=np.int64)[rows]
    return {"time": [iso(int(t)) for t in ts], "equity": clean(equity[rows].tolist()),
            "drawdown": clean(drawdown[rows].tolist()), "points_total": len(equity),
            "thinned": len(rows) < len(equity)}


def summary_numbers(ticks: pd.DataFrame) -> dict[str, Any]:
    if ticks.empty:
        return {"start_equity": None, "equity": None, "return": None, "drawdown": None,
                "max_drawdown": None}
    equity = ticks["equity"].to_numpy(dtype=float)
    drawdown = equity / np.maximum.accumulate(equity) - 1.0
    return clean({"start_equity": equity[0], "equity": equity[-1],
                  "return": equity[-1] / equity[0] - 1.0, "drawdown": drawdown[-1],
                  "max_drawdown": float(drawdown.min())})


# ---------------------------------------------------------------- positions and profit
def positions(symbols: Sequence[str], books: Mapping[str, Mapping[str, Any] | None],
              risk_state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per traded symbol (flat ones too): position, entry, stop, take-profit
    (``target``, a price), last close, unrealized PnL = position x (last close - entry) before
    exit costs, and the policy's last fresh ``target_position`` (fraction of equity) and its
    ``policy_reason``, as ``candlecast trade status`` reports them."""
    risk_positions = (risk_state or {}).get("positions") or {}
    rows = []
    for symbol in symbols:
        book = books.get(symbol) or {}
        qty = float(book.get("pos") or 0.0)
        last = book.get("last_close")
        risk = risk_positions.get(symbol) if qty != 0.0 else None
        entry = risk.get("entry_price") if risk else None
        pnl = qty * (last - entry) if qty and entry is not None and last is not None else None
        rows.append(clean({
            "symbol": symbol, "side": "long" if qty > 0 else "short" if qty < 0 else "flat",
            "qty": qty, "entry": entry, "stop": risk.get("stop") if risk else None,
            "stop_reason": risk.get("stop_reason") if risk else None,
            "target": risk.get("target") if risk else None, "last_close": last,
            "unrealized_pnl": pnl,
            "unrealized_pct": pnl / abs(qty * entry) if pnl is not None and entry else None,
            "working_order": bool(book.get("pending")), "order_reason": book.get("reason") or "",
            "order_style": book.get("order_style") if book.get("pending") else None,
            "target_position": book.get("target_position"),
            "policy_reason": book.get("policy_reason") or None,
        }))
    return rows


def profit(ticks: pd.DataFrame, fills: pd.DataFrame, position_rows: Sequence[Mapping[str, Any]]
           ) -> dict[str, Any]:
    """PnL since the first candle: total = equity change; unrealized from the open positions;
    realized = the rest (closed trades, fees and funding)."""
    numbers = summary_numbers(ticks)
    unrealized = sum(r["unrealized_pnl"] or 0.0 for r in position_rows)
    total = (numbers["equity"] - numbers["start_equity"]) if numbers["equity"] is not None \
        else None
    return clean({
        **numbers, "pnl": total, "unrealized_pnl": unrealized,
        "realized_pnl": None if total is None else total - unrealized,
        "fills": len(fills), "fees": float(fills["fee"].sum()) if len(fills) else 0.0,
        "slippage": float(fills["slippage"].sum()) if len(fills) else 0.0,
        "candles": len(ticks),
    })


# ---------------------------------------------------------------- journals
def fill_rows(fills: pd.DataFrame) -> list[dict[str, Any]]:
    if fills.empty:
        return []
    out = fills.assign(time=[iso(int(t)) for t in fills["ts"]],
                       side=[SIDES.get(int(s), str(s)) for s in fills["side"]])
    return records(out, ["time", "symbol", "side", "qty", "price", "fee", "slippage", "reason",
                         "pos_after", "client_id"])


def order_rows(orders: pd.DataFrame) -> list[dict[str, Any]]:
    if orders.empty:
        return []
    out = orders.assign(created=[iso(int(t)) for t in orders["created_ts"]],
                        side=[SIDES.get(int(s), str(s)) for s in orders["side"]])
    return records(out, ["created", "symbol", "side", "intent", "reason", "status", "style",
                         "limit_price", "target", "notional", "amount", "filled", "client_id"])


def decision_rows(decisions: pd.DataFrame) -> list[dict[str, Any]]:
    if decisions.empty:
        return []
    out = decisions.assign(time=[iso(int(t)) for t in decisions["ts"]],
                           side=[SIDES.get(int(s), str(s)) for s in decisions["side"]])
    return records(out, ["time", "symbol", "action", "reason", "side", "qty", "notes", "detail"])


def decision_counts(decisions: pd.DataFrame) -> list[dict[str, Any]]:
    """Every decision ever journalled, counted by action and reason."""
    if decisions.empty:
        return []
    counts = decisions.groupby(["action", "reason"]).size().reset_index(name="count")
    return records(counts.sort_values("count", ascending=False), ["action", "reason", "count"])


def event_rows(events: pd.DataFrame) -> list[dict[str, Any]]:
    if events.empty:
        return []
    out = events.assign(candle=[iso(None if t is None or t != t else int(t))
                                for t in events["ts"]])
    return records(out, ["wall_time", "kind", "message", "candle"])


def signal_rows(symbols: Sequence[str], latest: Mapping[str, Mapping[str, Any] | None],
                latest_fresh: Mapping[str, Mapping[str, Any] | None], step_ns: int
                ) -> list[dict[str, Any]]:
    """Per series: the newest candle's signal (status, action, the policy's target position
    -- a fraction of equity -- and its reason, model version) and the last FRESH one. A signal
    counts as fresh only when its feature timestamp is the candle's close (within
    ``trade.max_signal_lag_s``), so that close is the feature timestamp shown. Journals older
    than the target contract have no target (None)."""
    def target(row: Mapping[str, Any] | None) -> Any:
        return row.get("target_position") if row else None

    def reason(row: Mapping[str, Any] | None) -> Any:
        return (row.get("policy_reason") or None) if row else None

    rows = []
    for symbol in symbols:
        bar, fresh = latest.get(symbol), latest_fresh.get(symbol)
        rows.append(clean({
            "symbol": symbol,
            "candle": iso(int(bar["ts"])) if bar else None,
            "status": bar["signal_status"] if bar else None,
            "action": (bar["signal_action"] or None) if bar else None,
            "target_position": target(bar), "policy_reason": reason(bar),
            "model_version": (bar["model_version"] or None) if bar else None,
            "fresh_action": fresh["signal_action"] if fresh else None,
            "fresh_target_position": target(fresh), "fresh_policy_reason": reason(fresh),
            "fresh_model_version": fresh["model_version"] if fresh else None,
            "feature_timestamp": iso(int(fresh["ts"]) + step_ns) if fresh else None,
        }))
    return rows


def trader_status(account: Mapping[str, Any] | None, risk_state: Mapping[str, Any] | None,
                  flags: Mapping[str, Any], last_tick_ns: int | None,
                  idle: bool = False) -> dict[str, Any]:
    """Kill / pause / halt state in one place, and a one-word ``state`` for the badge
    (``idle``: nothing else applies but the trader has not written its state for longer than
    it would while running)."""
    account = account or {}
    risk = risk_state or {}
    halted_until = int(risk.get("halted_until_day", -1))
    day = int(risk.get("day", -1))
    out = {
        "paused": bool(flags.get("paused")),
        "kill_switch_file": bool(flags.get("kill_switch")),
        "kill_file_reason": flags.get("kill_reason"),
        "killed": bool(account.get("killed")), "kill_reason": account.get("kill_reason") or "",
        "drawdown_halted": bool(risk.get("drawdown_halted")),
        "daily_loss_halted": halted_until >= day >= 0,
        "signal_failures": int(account.get("signal_failures") or 0),
        "last_candle": iso(last_tick_ns) if last_tick_ns is not None else None,
    }
    if out["killed"]:
        state = "killed"
    elif out["kill_switch_file"]:
        state = "kill requested"
    elif out["drawdown_halted"] or out["daily_loss_halted"]:
        state = "halted"
    elif out["paused"]:
        state = "paused"
    elif not account:
        state = "no state"
    else:
        state = "idle" if idle else "trading"
    return {**out, "state": state}


# ---------------------------------------------------------------- backtest vs paper
def backtest_comparison(ticks: pd.DataFrame, curves: Mapping[str, pd.DataFrame],
                        strategy: str) -> dict[str, Any]:
    """The paper equity beside the backtest of the same period.

    ``curves``: per series key, the backtest stage's ``equity.csv`` (``timestamp`` = bar open
    time, one column per strategy; possibly thinned to every k-th bar). Both curves are
    returns from the paper session's first candle: the backtest's from its last curve point at
    or before it. Several series (one backtest each, all on the same initial equity) are
    averaged: the paper account trades them from one cash balance.
    """
    if ticks.empty:
        return {"available": False, "reason": "no paper candles yet"}
    if not curves:
        return {"available": False, "reason": "no backtest curves (run the backtest stage)"}
    times = pd.to_datetime(ticks["ts"].to_numpy(dtype=np.int64), utc=True)
    start, end = times[0], times[-1]
    rebased = []
    for key, table in sorted(curves.items()):
        if strategy not in table.columns:
            return {"available": False,
                    "reason": f"backtest curves of {key} have no strategy {strategy!r} "
                    f"(columns: {[c for c in table.columns if c not in ('step', 'timestamp')]})"}
        stamp = pd.to_datetime(table["timestamp"], utc=True)
        before = np.flatnonzero(stamp <= start)
        inside = (stamp >= start) & (stamp <= end)
        if not len(before) or not inside.any():
            return {"available": False,
                    "reason": f"the backtest of {key} ({stamp.iloc[0]} .. {stamp.iloc[-1]}) "
                    f"does not cover the paper period ({start} .. {end})"}
        base = float(table[strategy].iloc[before[-1]])
        part = table.loc[inside.to_numpy(), strategy].to_numpy(dtype=float) / base - 1.0
        rebased.append(pd.Series(part, index=stamp[inside].to_numpy()))
    backtest = pd.concat(rebased, axis=1).mean(axis=1).sort_index()
    paper_equity = ticks["equity"].to_numpy(dtype=float)
    paper = pd.Series(paper_equity / paper_equity[0] - 1.0, index=times)
    at_points = paper.reindex(backtest.index, method="ffill")
    gap = (at_points - backtest).abs()
    step = pd.Series(pd.to_datetime(next(iter(curves.values()))["timestamp"], utc=True)).diff()
    return clean({
        "available": True, "strategy": strategy, "series": sorted(curves),
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "paper": {"time": [t.isoformat() for t in paper.index], "return": paper.tolist()},
        "backtest": {"time": [pd.Timestamp(t).isoformat() for t in backtest.index],
                     "return": backtest.tolist()},
        "paper_return": float(paper.iloc[-1]),
        "backtest_return": float(backtest.iloc[-1]),
        # at the last backtest point (the curves may be thinned): paper minus backtest
        "compared_at": pd.Timestamp(backtest.index[-1]).isoformat(),
        "difference": float(at_points.iloc[-1] - backtest.iloc[-1]),
        "max_abs_gap": float(gap.max()),
        "backtest_resolution": f"{step.median() / pd.Timedelta(minutes=1):g} min"
        if len(step) > 1 else None,
    })
