"""The trader's durable state: one SQLite file in WAL mode, written in one transaction per candle.

Everything the trader needs to continue after a crash lives here: the account (cash, funding),
each symbol's book (position, working order), the risk engine's state, each feature engine's
state, the last processed candle, plus the journals (orders, fills, decisions, per-candle equity,
events). Because a candle's changes commit together (``synchronous=FULL``), a ``kill -9`` loses at
most the candle being processed, which the restarted trader processes again from the same state:
no duplicated and no lost fills. Fill ids and client order ids are deterministic, and the journals
have them as primary keys, so a replayed candle could not insert a second copy anyway.
(``synchronous=NORMAL`` keeps all of this across a killed process but not across an OS crash.)

A second trader on the same file is refused (an exclusive ``flock`` on ``<db>.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pickle
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.common.time import utc_now_iso


def _now() -> str:
    return utc_now_iso("milliseconds")


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ticks (
    ts INTEGER PRIMARY KEY, cash REAL, funding_paid REAL, equity REAL);
CREATE TABLE IF NOT EXISTS bars (
    symbol TEXT, ts INTEGER, open REAL, high REAL, low REAL, close REAL, volume REAL,
    position REAL, signal_action TEXT, signal_status TEXT, model_version TEXT,
    target_position REAL, policy_reason TEXT DEFAULT '',
    PRIMARY KEY (symbol, ts));
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY, symbol TEXT, created_ts INTEGER, intent TEXT, side INTEGER,
    target REAL, notional REAL, amount REAL, reason TEXT, status TEXT, exchange_id TEXT,
    filled REAL DEFAULT 0, cost REAL DEFAULT 0, fee REAL DEFAULT 0, updated_at TEXT,
    detail TEXT DEFAULT '', style TEXT DEFAULT 'market', limit_price REAL);
CREATE TABLE IF NOT EXISTS fills (
    fill_id TEXT PRIMARY KEY, client_id TEXT, symbol TEXT, ts INTEGER, side INTEGER, qty REAL,
    price REAL, ref_price REAL, fee REAL, slippage REAL, reason TEXT, pos_after REAL,
    cash_after REAL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER, symbol TEXT, action TEXT, reason TEXT,
    side INTEGER, qty REAL, notes TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, wall_time TEXT, ts INTEGER, kind TEXT, message TEXT);
"""


#: the append-only tables (journals) and ``orders``, readable with :meth:`StateStore.journal`
JOURNALS = ("ticks", "bars", "orders", "fills", "decisions", "events")

#: order journal statuses that may still change
OPEN_ORDER_STATUSES = ("working", "new", "open", "unknown")
#: columns added after the first schema: (table, column, declaration), added to older files
_ADDED_COLUMNS = (
    ("bars", "target_position", "REAL"),
    ("bars", "policy_reason", "TEXT DEFAULT ''"),
    ("orders", "style", "TEXT DEFAULT 'market'"),
    ("orders", "limit_price", "REAL"),
)


class _PlainUnpickler(pickle.Unpickler):
    """Loads only built-in containers and scalars: no class is ever resolved (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"state blobs hold plain data only, not {module}.{name}")


class StateLockedError(RuntimeError):
    """Another trader holds this state database."""


class StateStore:
    """The SQLite state of one trader. Use :meth:`transaction` for every write."""

    def __init__(self, path: str | Path, *, lock: bool = True, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        if lock:
            fd = os.open(str(self.path) + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as error:
                os.close(fd)
                raise StateLockedError(
                    f"state database {self.path} is in use by another trader "
                    f"(lock file {self.path}.lock)"
                ) from error
            self._lock_fd = fd
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss; NORMAL (WAL): survives a killed process, not an OS
        # crash, and is several times faster (no fsync per commit)
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.executescript(SCHEMA)
        self._add_missing_columns()
        self._depth = 0

    def _add_missing_columns(self) -> None:
        """Bring a state file written by an older trader up to the current journal columns."""
        for table, column, declaration in _ADDED_COLUMNS:
            have = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StateStore]:
        """All writes inside commit together or not at all (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    # ---- meta ------------------------------------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put_blob(self, key: str, value: Any) -> None:
        """Store plain data (dicts, lists, str, numbers, None) as a pickle: ~20x faster than
        JSON for the feature engine's float buffers, written every candle."""
        self.conn.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)",
                          (key, pickle.dumps(value, protocol=5)))

    def get_blob(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM blobs WHERE key = ?", (key,)).fetchone()
        return default if row is None else _PlainUnpickler(io.BytesIO(row[0])).load()

    def has_state(self) -> bool:
        return self.get("account") is not None

    # ---- journals --------------------------------------------------------------------------
    def add_tick(self, ts: int, cash: float, funding_paid: float, equity: float) -> None:
        self.conn.execute("INSERT INTO ticks VALUES (?, ?, ?, ?)", (ts, cash, funding_paid, equity))

    def add_bar(self, symbol: str, ts: int, bar: tuple[float, ...], position: float,
                signal_action: str, signal_status: str, model_version: str,
                target_position: float | None = None, policy_reason: str = "") -> None:
        """One processed candle: OHLCV, the position after it, the signal's action, status and
        model version, and the policy's target and reason (NaN/None: no fresh target)."""
        if target_position is not None and target_position != target_position:
            target_position = None
        self.conn.execute(
            "INSERT INTO bars (symbol, ts, open, high, low, close, volume, position, "
            "signal_action, signal_status, model_version, target_position, policy_reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (symbol, ts, *bar, position, signal_action, signal_status, model_version,
             target_position, policy_reason))

    def add_fill(self, fill: Mapping[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO fills VALUES (:fill_id, :client_id, :symbol, :ts, :side, :qty, :price, "
            ":ref_price, :fee, :slippage, :reason, :pos_after, :cash_after)", dict(fill))

    def add_order(self, order: Mapping[str, Any]) -> None:
        row = {"exchange_id": None, "filled": 0.0, "cost": 0.0, "fee": 0.0, "detail": "",
               "style": "market", "limit_price": None, **order, "updated_at": _now()}
        self.conn.execute(
            "INSERT INTO orders (client_id, symbol, created_ts, intent, side, target, notional, "
            "amount, reason, status, exchange_id, filled, cost, fee, updated_at, detail, style, "
            "limit_price) VALUES "
            "(:client_id, :symbol, :created_ts, :intent, :side, :target, :notional, :amount, "
            ":reason, :status, :exchange_id, :filled, :cost, :fee, :updated_at, :detail, "
            ":style, :limit_price)", row)

    def update_order(self, client_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields["updated_at"] = _now()
        sets = ", ".join(f"{name} = :{name}" for name in fields)
        cur = self.conn.execute(f"UPDATE orders SET {sets} WHERE client_id = :cid",  # noqa: S608
                                {**fields, "cid": client_id})
        if cur.rowcount != 1:
            raise KeyError(f"no order with client id {client_id!r} in {self.path}")

    def open_order(self, client_id: str, symbol: str, ts: int, intent: str, direction: float,
                   target: float, notional: float | None, reason: str, status: str,
                   style: str = "market", limit_price: float | None = None) -> None:
        """Journal a working order (once per client id; a re-decided identical order is the
        same order); ``style`` market or limit, with the limit's price."""
        if self.order(client_id) is None:
            self.add_order({
                "client_id": client_id, "symbol": symbol, "created_ts": ts, "intent": intent,
                "side": 1 if direction > 0 else -1 if direction < 0 else 0, "target": target,
                "notional": notional, "amount": None, "reason": reason, "status": status,
                "style": style, "limit_price": limit_price})

    def close_orders(self, statuses: Mapping[str, str], unfilled: str) -> None:
        """Final status of orders that were still open; a "filled" order that never filled
        gets ``unfilled`` instead (superseded in the same candle, or cancelled by a kill)."""
        for client_id, status in statuses.items():
            row = self.order(client_id)
            if row is not None and row["status"] in OPEN_ORDER_STATUSES:
                if status == "filled" and not row["filled"]:
                    status = unfilled
                self.update_order(client_id, status=status)

    def record_fill(self, fill: Any, reason: str, pos_after: float, cash_after: float) -> None:
        """Journal a :class:`~candlecast.trading.book.Fill` (id = client id, candle, sequence)
        and add it to its order's totals."""
        n = self.conn.execute("SELECT COUNT(*) FROM fills WHERE client_id = ?",
                              (fill.client_id,)).fetchone()[0]
        self.add_fill({
            "fill_id": f"{fill.client_id}:{fill.ts}:{n}", "client_id": fill.client_id,
            "symbol": fill.symbol, "ts": fill.ts, "side": fill.side, "qty": fill.qty,
            "price": fill.price, "ref_price": fill.ref_price, "fee": fill.fee,
            "slippage": fill.slippage, "reason": reason, "pos_after": pos_after,
            "cash_after": cash_after})
        self.add_to_order(fill.client_id, fill.qty, fill.qty * fill.price, fill.fee)

    def add_to_order(self, client_id: str, qty: float, cost: float, fee: float) -> None:
        """Add one fill to an order's totals (no-op when the order is not journalled yet)."""
        self.conn.execute(
            "UPDATE orders SET filled = filled + ?, cost = cost + ?, fee = fee + ?, "
            "updated_at = ? WHERE client_id = ?", (qty, cost, fee, _now(), client_id))

    def order(self, client_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM orders WHERE client_id = ?", (client_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row,
                                                 strict=True))

    def orders_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in statuses)
        cur = self.conn.execute(
            f"SELECT * FROM orders WHERE status IN ({marks}) ORDER BY created_ts",  # noqa: S608
            statuses)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def add_decision(self, ts: int, symbol: str, action: str, reason: str, side: int, qty: float,
                     notes: str = "", detail: str = "") -> None:
        self.conn.execute(
            "INSERT INTO decisions (ts, symbol, action, reason, side, qty, notes, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (ts, symbol, action, reason, side, qty, notes,
                                                detail))

    def add_event(self, kind: str, message: str, ts: int | None = None) -> None:
        self.conn.execute("INSERT INTO events (wall_time, ts, kind, message) VALUES (?, ?, ?, ?)",
                          (_now(), ts, kind, message))

    # ---- reading (reports, tests, `trade status`) -------------------------------------------
    def event_counts(self) -> dict[str, int]:
        """Journalled events by kind (every session on this database)."""
        rows = self.conn.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind")
        return {kind: int(n) for kind, n in rows}

    def book(self, symbol: str) -> dict[str, Any] | None:
        """The stored book of ``symbol`` (position, working order, policy target) as plain
        data, or ``None`` before the first save."""
        return self.get(f"book:{symbol}")

    def working_orders(self, symbols: Iterable[str]) -> list[dict[str, Any]]:
        """The working order of each of ``symbols`` that has one (see
        :func:`candlecast.trading.book.working_order_view`: style, side, limit price, candles
        left, what happens at expiry, remaining size, reason, status)."""
        from candlecast.trading.book import working_order_view

        out = []
        for symbol in symbols:
            view = working_order_view(self.book(symbol) or {})
            if view is not None:
                out.append(view)
        return out

    def frame(self, table: str) -> pd.DataFrame:
        if table not in ("ticks", "bars", "orders", "fills", "decisions", "events"):
            raise ValueError(f"unknown table {table!r}")
        order = {"ticks": "ts", "bars": "ts, symbol", "orders": "created_ts, client_id",
                 "fills": "ts, rowid", "decisions": "id", "events": "id"}[table]
        return pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order}",  # noqa: S608
                                 self.conn)

    # ---- reading for the operator's console and alerts (``candlecast.console``) ------------
    def journal(self, table: str, *, after: int | None = None, last: int | None = None
                ) -> pd.DataFrame:
        """A journal's rows in insertion order with their sequence number ``seq`` (SQLite's
        rowid; for ``ticks`` it is the candle time): all, those with ``seq > after``, or the
        ``last`` n (of those)."""
        if table not in JOURNALS:
            raise ValueError(f"unknown table {table!r}")
        where, args = ("WHERE rowid > ?", [after]) if after is not None else ("", [])
        if last is None:
            query = f"SELECT rowid AS seq, * FROM {table} {where} ORDER BY rowid"  # noqa: S608
        else:
            query = (f"SELECT * FROM (SELECT rowid AS seq, * FROM {table} {where} "  # noqa: S608
                     "ORDER BY rowid DESC LIMIT ?) ORDER BY seq")
            args.append(int(last))
        return pd.read_sql_query(query, self.conn, params=args)

    def first_row(self, table: str) -> dict[str, Any] | None:
        """A journal's oldest row (None when empty)."""
        if table not in JOURNALS:
            raise ValueError(f"unknown table {table!r}")
        cur = self.conn.execute(f"SELECT * FROM {table} ORDER BY rowid LIMIT 1")  # noqa: S608
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row,
                                                 strict=True))

    def last_seq(self, table: str) -> int:
        """The newest row's sequence number of a journal (0 when empty)."""
        if table not in JOURNALS:
            raise ValueError(f"unknown table {table!r}")
        row = self.conn.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()  # noqa: S608
        return int(row[0] or 0)

    def count(self, table: str) -> int:
        if table not in JOURNALS:
            raise ValueError(f"unknown table {table!r}")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608

    def latest_bars(self, symbols: Iterable[str], signal_status: str | None = None
                    ) -> dict[str, dict[str, Any] | None]:
        """Each symbol's newest journalled candle (with the signal it got), or its newest with
        ``signal_status`` (e.g. ``"ok"``: the last fresh signal); None when there is none."""
        out: dict[str, dict[str, Any] | None] = {}
        for symbol in symbols:
            query = "SELECT * FROM bars WHERE symbol = ?"
            args: list[Any] = [symbol]
            if signal_status is not None:
                query += " AND signal_status = ?"
                args.append(signal_status)
            cur = self.conn.execute(query + " ORDER BY ts DESC LIMIT 1", args)
            row = cur.fetchone()
            out[symbol] = None if row is None else dict(
                zip([d[0] for d in cur.description], row, strict=True))
        return out

    def book_state(self, symbol: str) -> dict[str, Any] | None:
        """The stored :class:`~candlecast.trading.book.SymbolBook` of ``symbol`` (plain dict)."""
        return self.get(f"book:{symbol}")

    def risk_state_dict(self) -> dict[str, Any] | None:
        """The stored risk engine state (``RiskState.to_dict()``), None before the first
        candle."""
        return self.get("risk_state")


#: the streaming feed's state after each of its connection events (``trade status``)
_FEED_STATES = {"stream_subscribing": "subscribing", "stream_connected": "streaming",
                "stream_recovered": "streaming", "stream_disconnected": "reconnecting",
                "stream_silent": "stale", "feed_failed": "failed"}


def feed_status(store: StateStore) -> dict[str, Any] | None:
    """The streaming feed as the journal last saw it: ``state`` (subscribing, streaming,
    reconnecting, stale, failed), since when and why; ``None`` when no stream ran."""
    kinds = ", ".join(f"'{k}'" for k in _FEED_STATES)
    row = store.conn.execute(
        f"SELECT wall_time, kind, message FROM events WHERE kind IN ({kinds}) "  # noqa: S608
        "ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    stale = store.conn.execute("SELECT MAX(ts) FROM events WHERE kind = 'stale_data'").fetchone()
    last_stale = None if stale[0] is None else str(pd.Timestamp(stale[0], tz="UTC"))
    return {"state": _FEED_STATES[row[1]], "since": row[0], "event": row[1], "detail": row[2],
            "last_stale_candle": last_stale}


def read_only(path: str | Path) -> StateStore:
    """Open a state database for reading while a trader may be running (no lock taken)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no trader state at {path}")
    return StateStore(path, lock=False)
