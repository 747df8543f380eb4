"""The dashboard's HTTP API (FastAPI test client, no browser) and the journal watcher: who may
view, who may control, what is recorded; which journal rows become which alerts."""

from __future__ import annotations

import json

import pytest
from console_helpers import TOKEN
from fastapi.testclient import TestClient

from candlecast.common.auth import control_token_from_env
from candlecast.config import Params
from candlecast.console.app import create_app
from candlecast.console.state import build_console
from candlecast.console.watch import JournalWatcher
from candlecast.trading import StateStore, TradeConfig


def console_at(tmp_path, token_env=None):
    token = control_token_from_env(token_env or {})
    return build_console(Params(), tmp_path, token)


def client_of(console, base="http://127.0.0.1"):
    return TestClient(create_app(console), base_url=base)


def audit_of(console):
    path = console.controls.audit.path
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_no_token_configured_means_no_controls_and_it_is_recorded(tmp_path):
    console = console_at(tmp_path)
    client = client_of(console)
    answer = client.post("/api/control/pause", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 403 and not answer.json()["accepted"]
    assert "CANDLECAST_CONTROL_TOKEN is not set" in answer.json()["message"]
    assert not (tmp_path / "data" / "trading" / "PAUSE").exists()
    (entry,) = audit_of(console)
    assert entry["source"] == "dashboard" and entry["action"] == "pause"
    assert not entry["accepted"]


def test_controls_need_the_token_and_use_the_cli_files(tmp_path):
    console = console_at(tmp_path, {"CANDLECAST_CONTROL_TOKEN": TOKEN})
    client = client_of(console)
    pause = tmp_path / "data" / "trading" / "PAUSE"
    kill = tmp_path / "data" / "trading" / "KILL"
    assert client.post("/api/control/pause").status_code == 401
    wrong = client.post("/api/control/pause", headers={"Authorization": "Bearer " + "x" * 30})
    assert wrong.status_code == 401 and wrong.json()["message"] == "invalid control token"
    assert not pause.exists()
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/control/pause", headers=good).json()["accepted"]
    assert pause.read_text() == "paused"  # what `candlecast trade pause` writes
    assert client.post("/api/control/resume", headers=good).json()["accepted"]
    assert not pause.exists()
    no_reason = client.post("/api/control/kill", headers=good, json={"reason": "  "})
    assert no_reason.status_code == 400 and not kill.exists()
    done = client.post("/api/control/kill", headers=good, json={"reason": "exchange down"})
    assert done.json()["accepted"] and kill.read_text().startswith("exchange down")
    assert client.post("/api/control/explode", headers=good).status_code == 400
    entries = audit_of(console)
    assert [(e["action"], e["accepted"]) for e in entries] == [
        ("pause", False), ("pause", False), ("pause", True), ("resume", True), ("kill", False),
        ("kill", True), ("explode", False)]
    assert TOKEN not in console.controls.audit.path.read_text()


def test_viewing_is_local_unless_the_token_is_shown(tmp_path):
    console = console_at(tmp_path, {"CANDLECAST_CONTROL_TOKEN": TOKEN})
    client = client_of(console)  # the test client's address is not a loopback one
    assert client.get("/api/state").status_code == 401
    state = client.get("/api/state", headers={"Authorization": f"Bearer {TOKEN}"})
    assert state.status_code == 200
    body = state.json()
    assert not body["trader"]["available"] and "no trader state" in body["trader"]["reason"]
    assert body["controls"]["enabled"] and not body["registry"]["available"]
    assert client.get("/").status_code == 200  # the page itself holds no data
    assert "Plotly" in client.get("/static/plotly.min.js").text[:2000]
    assert client.get("/static/../app.py").status_code == 404


def test_dns_rebinding_is_refused(tmp_path):
    client = client_of(console_at(tmp_path), base="http://attacker.example")
    assert client.get("/").status_code == 400


def test_journal_watcher_alerts_once_per_row_and_per_outage(tmp_path):
    config = TradeConfig(state_db=str(tmp_path / "state.db"))
    console = build_console(Params(trade=config), tmp_path, control_token_from_env({}))
    watcher = JournalWatcher(console.trader, tmp_path / "cursor.json")
    assert watcher.poll() == []  # no state yet
    store = StateStore(config.state_db, synchronous="NORMAL")
    with store.transaction():
        store.add_event("start", "new paper session")
        store.add_fill({"fill_id": "a:1:0", "client_id": "a", "symbol": "BTC/USD", "ts": 10**18,
                        "side": 1, "qty": 0.5, "price": 9000.0, "ref_price": 8990.0,
                        "fee": 4.5, "slippage": 1.0, "reason": "signal_entry",
                        "pos_after": 0.5, "cash_after": 5000.0})
    watcher.skip_to_end()  # a first start: history is not alerted
    assert watcher.poll() == []
    with store.transaction():
        for _ in range(3):
            store.add_event("no_fresh_signal", "BTC/USD: timeout; no new positions")
        store.add_event("signal_recovered", "BTC/USD: fresh signal after 3 candle(s)")
        store.add_event("no_fresh_signal", "BTC/USD: stale; no new positions")
        store.add_decision(10**18, "BTC/USD", "halt", "max_drawdown", 0, 0.0, "", "dd 31%")
        store.add_event("kill", "kill switch: exchange incident", 10**18)
    events = [a["event"] for a in watcher.poll()]
    assert sorted(events) == ["stale_data", "stale_data", "trader_halted", "trader_killed"]
    assert watcher.poll() == []
    # a restarted watcher continues from its cursor file
    again = JournalWatcher(console.trader, tmp_path / "cursor.json")
    assert again.poll() == []
    with store.transaction():
        store.add_fill({"fill_id": "b:1:0", "client_id": "b", "symbol": "BTC/USD", "ts": 10**18,
                        "side": -1, "qty": 0.5, "price": 9100.0, "ref_price": 9110.0,
                        "fee": 4.55, "slippage": 1.0, "reason": "stop_loss",
                        "pos_after": 0.0, "cash_after": 9545.0})
    (fill,) = again.poll()
    assert fill["event"] == "trade_fill" and "SELL 0.5 BTC/USD @ 9,100.00" in fill["message"]
    assert fill["details"]["reason"] == "stop_loss"
    store.close()


@pytest.mark.parametrize("n", [25])
def test_journal_watcher_caps_a_backlog(tmp_path, n):
    config = TradeConfig(state_db=str(tmp_path / "state.db"))
    console = build_console(Params(trade=config), tmp_path, control_token_from_env({}))
    watcher = JournalWatcher(console.trader, tmp_path / "cursor.json", max_per_poll=10)
    store = StateStore(config.state_db, synchronous="NORMAL")
    with store.transaction():
        for i in range(n):
            store.add_event("gap", f"BTC/USD: {i} candles missing", 10**18 + i)
    alerts = watcher.poll()
    assert len(alerts) == 10
    assert alerts[-1]["message"].startswith(f"and {n - 9} more alerts: {n - 9} stale_data")
    store.close()
