"""The console's edges: read the trader's state database (through the trading package's store
API only), the MLflow registry, the ops loop's outputs and the backtest stage's curves.

Nothing here writes anywhere: the state database is opened without the trader's lock, the
MLflow store is only queried (and not created when it does not exist yet), files are only read.
Each source answers ``{"available": False, "reason": ...}`` instead of raising, so one missing
piece never blanks the page.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.console import views
from candlecast.trading.config import TradeConfig
from candlecast.trading.ops import read_flag_file
from candlecast.trading.store import OPEN_ORDER_STATUSES, StateStore, read_only

log = logging.getLogger(__name__)


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


# ---------------------------------------------------------------- the trader
@dataclass
class TraderSource:
    """The trader's state (``trade.state_db``) and its flag files, paths under ``root``."""

    config: TradeConfig
    root: Path
    recent_rows: int = 50
    max_points: int = 3000
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ticks: pd.DataFrame | None = field(default=None, repr=False)
    _inode: int | None = field(default=None, repr=False)

    @property
    def state_db(self) -> Path:
        return self.root / self.config.state_db

    @property
    def pause_file(self) -> Path:
        return self.root / self.config.pause_file

    @property
    def kill_switch_file(self) -> Path:
        return self.root / self.config.kill_switch_file

    def flags(self) -> dict[str, Any]:
        kill = read_flag_file(self.kill_switch_file)
        return {"paused": read_flag_file(self.pause_file) is not None,
                "kill_switch": kill is not None, "kill_reason": kill}

    def open(self) -> StateStore:
        """The state database for reading (raises ``FileNotFoundError`` if there is none)."""
        return read_only(self.state_db)

    def ticks(self, store: StateStore) -> pd.DataFrame:
        """All per-candle equity rows, read incrementally (only new rows after the first
        call; a replaced database file is read again)."""
        inode = self.state_db.stat().st_ino
        with self._lock:
            cached = self._ticks if inode == self._inode else None
            last = int(cached["seq"].iloc[-1]) if cached is not None and len(cached) else None
            if cached is not None and store.last_seq("ticks") < (last or 0):
                cached, last = None, None  # rolled back / rebuilt: start over
            new = store.journal("ticks", after=last)
            ticks = new if cached is None else (
                pd.concat([cached, new], ignore_index=True) if len(new) else cached)
            self._ticks, self._inode = ticks, inode
            return ticks

    def current_ticks(self) -> pd.DataFrame:
        """The per-candle equity rows now (empty without a state database)."""
        try:
            store = self.open()
        except FileNotFoundError:
            return pd.DataFrame(columns=["seq", "ts", "cash", "funding_paid", "equity"])
        try:
            return self.ticks(store)
        finally:
            store.close()

    def snapshot(self) -> dict[str, Any]:
        cfg = self.config
        base = {"state_db": str(self.state_db), "mode": cfg.mode, "symbols": list(cfg.symbols),
                "exchange": cfg.exchange, "timeframe": cfg.timeframe}
        flags = self.flags()
        try:
            store = self.open()
        except FileNotFoundError:
            return {**base, **_unavailable(f"no trader state at {self.state_db} yet "
                                           "(start `candlecast trade run`)"),
                    "status": views.trader_status(None, None, flags, None)}
        try:
            ticks = self.ticks(store)
            fills = store.journal("fills")
            decisions = store.journal("decisions")
            books = {s: store.book_state(s) for s in cfg.symbols}
            risk = store.risk_state_dict()
            account = store.get("account")
            open_orders = store.orders_with_status(*OPEN_ORDER_STATUSES)
            events = store.journal("events", last=self.recent_rows)
            latest = store.latest_bars(cfg.symbols)
            fresh = store.latest_bars(cfg.symbols, signal_status="ok")
        finally:
            store.close()
        positions = views.positions(cfg.symbols, books, risk)
        step_ns = int(cfg.series[0].step.value)
        last_ns = int(ticks["ts"].iloc[-1]) if len(ticks) else None
        wal = self.state_db.with_name(self.state_db.name + "-wal")
        age = time.time() - max(p.stat().st_mtime for p in (self.state_db, wal) if p.exists())
        # a running trader writes at least once per candle (live: soon after each close)
        idle = age > 2 * step_ns / 1e9 + 120
        return views.clean({
            **base, "available": True, "account": account,
            "status": views.trader_status(account, risk, flags, last_ns, idle),
            "last_write_age_s": age,
            "candles_processed": len(ticks),
            "summary": views.summary_numbers(ticks),
            "profit": views.profit(ticks, fills, positions),
            "curve": views.equity_curve(ticks, self.max_points),
            "positions": positions,
            "orders": views.order_rows(pd.DataFrame(open_orders)),
            "fills": views.fill_rows(fills.tail(self.recent_rows)),
            "decisions": views.decision_rows(decisions.tail(self.recent_rows)),
            "decisions_total": len(decisions),
            "decision_counts": views.decision_counts(decisions),
            "events": views.event_rows(events),
            "signals": views.signal_rows(cfg.symbols, latest, fresh, step_ns),
        })


# ---------------------------------------------------------------- the MLflow registry
def _local_sqlite_missing(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI if it does not exist (MLflow would create it)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return None if path.exists() else path
    return None


@dataclass
class RegistrySource:
    """The registered model's champion, challenger, alias history and versions, and the ops
    retrain runs, from MLflow (cached ``cache_s`` seconds: each read is several queries)."""

    tracking_uri: str
    model_name: str
    cache_s: float = 15.0
    versions_shown: int = 10
    _cache: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._cache is not None and now - self._cache[0] < self.cache_s:
                return self._cache[1]
            try:
                value = self._read()
            except Exception as error:  # noqa: BLE001 - shown on the page, never fatal
                log.warning("registry view failed: %r", error)
                value = _unavailable(f"MLflow: {type(error).__name__}: {error}"[:300])
            self._cache = (now, value)
            return value

    def _read(self) -> dict[str, Any]:
        missing = _local_sqlite_missing(self.tracking_uri)
        if missing is not None:
            return _unavailable(f"no MLflow store at {missing} yet (run `make run`)")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        from candlecast.tracking.aliases import CHALLENGER, CHAMPION, champion_history

        client = MlflowClient(tracking_uri=self.tracking_uri)
        name = self.model_name
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            return _unavailable(f"no registered model {name!r} yet")
        aliases = dict(model.aliases or {})
        versions = sorted(client.search_model_versions(f"name = '{name}'", max_results=200),
                          key=lambda v: int(v.version), reverse=True)
        by_version = {str(v.version): v for v in versions}

        def describe(version: str | None) -> dict[str, Any] | None:
            v = by_version.get(str(version)) if version is not None else None
            if v is None:
                return None
            tags = dict(v.tags or {})
            return {"version": str(v.version), "run_id": v.run_id,
                    "created": views.iso(pd.Timestamp(v.creation_timestamp, unit="ms")),
                    "since": tags.get("ops.champion_since"),
                    "reason": tags.get("ops.champion_reason") or tags.get("ops.reason"),
                    "decision": tags.get("ops.decision")}

        rows = []
        for v in versions[:self.versions_shown]:
            tags = dict(v.tags or {})
            rows.append({"version": str(v.version),
                         "aliases": sorted(a for a, n in aliases.items()
                                           if str(n) == str(v.version)),
                         "created": views.iso(pd.Timestamp(v.creation_timestamp, unit="ms")),
                         "decision": tags.get("ops.decision"),
                         "reason": tags.get("ops.reason") or tags.get("ops.champion_reason")})
        return views.clean({
            "available": True, "model": name,
            "champion": describe(aliases.get(CHAMPION)),
            "challenger": describe(aliases.get(CHALLENGER)),
            "history": list(reversed(champion_history(client, name))),
            "versions": rows, "versions_total": len(versions),
            "retrains": self._retrains(client),
        })

    @staticmethod
    def _retrains(client: Any, n: int = 10) -> list[dict[str, Any]]:
        experiments = [e.experiment_id for e in client.search_experiments()]
        if not experiments:
            return []
        runs = client.search_runs(experiments, filter_string="tags.kind = 'ops.retrain'",
                                  order_by=["attributes.start_time DESC"], max_results=n)
        out = []
        for run in runs:
            tags, metrics = run.data.tags, run.data.metrics
            out.append({"time": tags.get("ops.decided_at"),
                        "decision": tags.get("ops.decision"),
                        "challenger": tags.get("ops.challenger_version"),
                        "champion": tags.get("ops.champion_version") or None,
                        "reason": tags.get("ops.reason"),
                        "p_value": metrics.get("p_value"),
                        "window": tags.get("ops.eval_window"), "run_id": run.info.run_id})
        return out


# ---------------------------------------------------------------- ops outputs and backtests
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class OpsSource:
    """The drift check's verdict files and the last retrain's outcome file."""

    drift_dir: Path
    retrain_latest: Path
    shown: int = 10

    def snapshot(self) -> dict[str, Any]:
        drift = []
        files = sorted(self.drift_dir.glob("drift_*.json")) if self.drift_dir.is_dir() else []
        for path in reversed(files[-self.shown:]):
            verdict = _read_json(path)
            if not isinstance(verdict, dict):
                continue
            drift.append({"stamp": path.stem.removeprefix("drift_"),
                          "drifted": verdict.get("drifted"),
                          "drift_share": verdict.get("drift_share"),
                          "prediction_score": verdict.get("prediction_score"),
                          "drifted_features": verdict.get("drifted_features") or [],
                          "reasons": verdict.get("reasons") or [],
                          "recent_rows": verdict.get("recent_rows"),
                          "champion_version": (verdict.get("lineage") or {}).get(
                              "champion_version"),
                          "report": verdict.get("report")})
        latest = _read_json(self.retrain_latest)
        retrain = None
        if isinstance(latest, dict):
            decision = latest.get("decision") or {}
            retrain = {"outcome": decision.get("outcome"), "reason": decision.get("reason"),
                       "challenger": decision.get("challenger_version"),
                       "champion_before": decision.get("champion_version"),
                       "champion_now": latest.get("champion"),
                       "window": (latest.get("evaluation") or {}).get("window")}
        return views.clean({"drift": drift, "drift_dir": str(self.drift_dir),
                            "retrain_latest": retrain})


def series_report_dir(series_key: str) -> str:
    """The folder name the backtest stage writes a series' report to (``backtest_stage``)."""
    return series_key.replace("/", "-").replace(":", "_")


@dataclass
class BacktestSource:
    """The backtest stage's per-series equity curves, compared with the paper equity."""

    reports: Path
    series_keys: tuple[str, ...]
    strategy: str | None = None  # None: each table's first strategy column (the primary)
    _cache: dict[Path, tuple[float, pd.DataFrame]] = field(default_factory=dict, repr=False)

    def curves(self) -> dict[str, pd.DataFrame]:
        out = {}
        for key in self.series_keys:
            path = self.reports / series_report_dir(key) / "equity.csv"
            if not path.exists():
                continue
            mtime = path.stat().st_mtime
            cached = self._cache.get(path)
            if cached is None or cached[0] != mtime:
                cached = (mtime, pd.read_csv(path))
                self._cache[path] = cached
            out[key] = cached[1]
        return out

    def compare(self, ticks: pd.DataFrame) -> dict[str, Any]:
        curves = self.curves()
        if not curves:
            return _unavailable(f"no backtest curves under {self.reports} for "
                                f"{list(self.series_keys)} (run the backtest stage)")
        if len(curves) < len(self.series_keys):
            return _unavailable(f"backtest curves missing for "
                                f"{sorted(set(self.series_keys) - set(curves))}")
        strategy = self.strategy or next(
            (c for c in next(iter(curves.values())).columns if c not in ("step", "timestamp")),
            "")
        return views.backtest_comparison(ticks, curves, strategy)
