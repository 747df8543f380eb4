"""Alerts from the trader's journal: new fills, the kill switch, risk-limit halts and data
problems (no fresh signal, gaps, bad candles), as the ops alert payloads
(:func:`candlecast.monitoring.alerts.alert_payload`: the same events and fields the ops webhook
carries), so the chat bot formats and delivers both the same way.

Read from the journal rather than sent by the trader: they arrive whether or not the trader was
started with a webhook, and no trader code changes. The position in each journal is kept in a
small cursor file, so a restarted bot continues where it stopped; a different trader session
(another database, or a fresh one) starts from its beginning. A backlog is capped per poll.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.console.sources import TraderSource
from candlecast.console.views import SIDES, iso
from candlecast.monitoring.alerts import alert_payload

log = logging.getLogger(__name__)

#: journal event kinds reported as data problems (plus any kind containing "stale")
DATA_EVENTS = frozenset({"no_fresh_signal", "gap", "bad_candle", "feature_store_error"})


def _symbol_of(message: str) -> str:
    head, sep, _ = message.partition(":")
    return head if sep else ""


def fill_alert(row: dict[str, Any], mode: str) -> dict[str, Any]:
    side = SIDES.get(int(row["side"]), str(row["side"])).upper()
    message = (f"{mode} fill: {side} {row['qty']:.8g} {row['symbol']} @ {row['price']:,.2f} "
               f"(fee {row['fee']:,.2f}, {row['reason']}); position now {row['pos_after']:.8g}")
    return alert_payload("trade_fill", message, {
        "symbol": row["symbol"], "side": side.lower(), "qty": float(row["qty"]),
        "price": float(row["price"]), "fee": float(row["fee"]), "reason": row["reason"],
        "position": float(row["pos_after"]), "candle": iso(int(row["ts"])),
        "client_id": row["client_id"]})


@dataclass
class JournalWatcher:
    """Turns journal rows appended since the last poll into alert payloads."""

    trader: TraderSource
    cursor_file: Path
    max_per_poll: int = 20
    _cursor: dict[str, Any] | None = field(default=None, repr=False)
    _streaks: set[str] = field(default_factory=set, repr=False)

    def _session(self, store: Any) -> str:
        """Identifies one trader session: its database and the time of its first event."""
        first = store.first_row("events")
        return f"{self.trader.state_db}|{first['wall_time'] if first else ''}"

    def _load(self, session: str) -> dict[str, Any]:
        if self._cursor is None:
            try:
                self._cursor = json.loads(self.cursor_file.read_text())
            except (OSError, json.JSONDecodeError):
                self._cursor = {}
        if self._cursor.get("session") != session:
            self._cursor = {"session": session, "fills": 0, "events": 0, "decisions": 0}
        return self._cursor

    def _save(self) -> None:
        self.cursor_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cursor_file.with_name(f".{self.cursor_file.name}.tmp")
        tmp.write_text(json.dumps(self._cursor))
        tmp.replace(self.cursor_file)

    def skip_to_end(self) -> None:
        """Start from now: what is already journalled is not alerted (a first start)."""
        try:
            store = self.trader.open()
        except FileNotFoundError:
            return
        try:
            cursor = self._load(self._session(store))
            for table in ("fills", "events", "decisions"):
                cursor[table] = store.last_seq(table)
        finally:
            store.close()
        self._save()

    def poll(self) -> list[dict[str, Any]]:
        try:
            store = self.trader.open()
        except FileNotFoundError:
            return []
        try:
            cursor = self._load(self._session(store))
            fills = store.journal("fills", after=cursor["fills"])
            events = store.journal("events", after=cursor["events"])
            decisions = store.journal("decisions", after=cursor["decisions"])
        finally:
            store.close()
        alerts: list[tuple[int, dict[str, Any]]] = []
        mode = self.trader.config.mode
        alerts += [(int(r["ts"]), fill_alert(r, mode)) for r in fills.to_dict("records")]
        for r in decisions.to_dict("records"):
            if r["action"] == "halt":
                alerts.append((int(r["ts"]), alert_payload(
                    "trader_halted", f"{mode} trader halted by a risk limit: {r['reason']} "
                    f"({r['detail']})", {"reason": r["reason"], "detail": r["detail"],
                                         "candle": iso(int(r["ts"]))})))
        for r in events.to_dict("records"):
            payload = self._event_alert(r)
            if payload is not None:
                ts = r["ts"]
                alerts.append((int(ts) if pd.notna(ts) else 0, payload))
        for table, frame in (("fills", fills), ("events", events), ("decisions", decisions)):
            if len(frame):
                cursor[table] = int(frame["seq"].iloc[-1])
        self._save()
        ordered = [payload for _, payload in sorted(alerts, key=lambda a: a[0])]
        if len(ordered) > self.max_per_poll:
            rest = ordered[self.max_per_poll - 1:]
            kinds = pd.Series([p["event"] for p in rest]).value_counts().to_dict()
            ordered = ordered[:self.max_per_poll - 1] + [alert_payload(
                "stale_data" if "stale_data" in kinds else rest[-1]["event"],
                f"and {len(rest)} more alerts: " + ", ".join(f"{n} {k}" for k, n in kinds.items())
                + " (see the dashboard)", {"collapsed": len(rest)})]
        return ordered

    def _event_alert(self, row: dict[str, Any]) -> dict[str, Any] | None:
        kind, message = str(row["kind"]), str(row["message"])
        candle = iso(int(row["ts"])) if pd.notna(row["ts"]) else None
        if kind == "kill":
            return alert_payload("trader_killed", f"trader killed: {message}",
                                 {"candle": candle, "wall_time": row["wall_time"]})
        symbol = _symbol_of(message)
        if kind == "signal_recovered":
            self._streaks.discard(symbol)
            return None
        if kind == "no_fresh_signal":
            if symbol in self._streaks:
                return None  # one alert per outage, not one per candle
            self._streaks.add(symbol)
        if kind in DATA_EVENTS or "stale" in kind:
            return alert_payload("stale_data", f"data problem ({kind}): {message}",
                                 {"kind": kind, "symbol": symbol, "candle": candle})
        return None
