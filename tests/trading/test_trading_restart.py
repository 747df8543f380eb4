"""Crash safety: a trader killed with SIGKILL mid-replay (also while a limit order is working),
or stopped with SIGTERM, continues from its stored state with no duplicate orders, no lost
fills, and the backtester's result."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import time

import numpy as np
import pandas as pd
from trading_helpers import (
    FakeSignalService,
    assert_same_fills,
    backtest_script,
    build_paper_trader,
    make_script,
    replay_slice,
    trader_fills,
)
from typer.testing import CliRunner

from candlecast.backtest.config import ExecutionConfig
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.features import FeatureConfig
from candlecast.trading import StopFlag, read_only
from candlecast.trading.cli import trade_app

START, N = 6000, 900
LIMITS = ExecutionConfig(entry="limit", exit="limit", limit_offset_bps=2.0, expire_bars=3,
                         on_expire="market")
POLICY = {"horizon": 4, "entry_margin": 1.0, "exit_margin": 0.0, "min_hold_bars": 2,
          "vol_target": 0.5, "allow_short": True, "execution": LIMITS}
BOOK_ORDER = ("pending", "pos", "target", "budget", "order_style", "order_limit",
              "order_last_bar", "order_on_expire", "order_id", "reason", "bars", "entry_bar")


def _ticks(db) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _wait_for_ticks(db, n: int, proc, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _ticks(db)
        if done >= n:
            return done
        assert proc.is_alive(), f"trader process exited with {proc.exitcode}"
        time.sleep(0.02)
    raise AssertionError(f"trader did not reach {n} candles")


def _child_run(tmp_path, full, replay, script, max_ticks=None) -> None:  # a forked process
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, script,
                                             config={"state_sync": "FULL"})
    trader.stop = StopFlag().install()
    trader.run(max_ticks=max_ticks)
    if max_ticks is not None:
        time.sleep(120)  # hold still until killed
    store.close()


def _setup(btc_30m, n):
    full, replay, feats = replay_slice(btc_30m, START, n, FeatureConfig())
    script = make_script(replay, feats, btc_30m, START, seed=1, **POLICY)
    return full, replay, feats, script


def _fork(target, *args):
    proc = multiprocessing.get_context("fork").Process(target=target, args=args)
    proc.start()
    return proc


def test_sigkill_mid_replay_then_restart_matches_backtest(tmp_path, btc_30m):
    full, replay, feats, script = _setup(btc_30m, N)
    db = tmp_path / "state.db"
    proc = _fork(_child_run, tmp_path, full, replay, script)
    try:
        _wait_for_ticks(db, 250, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no atexit, mid-candle most likely
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    done = _ticks(db)
    assert 250 <= done < N  # killed mid-replay

    trader, _, _, store = build_paper_trader(tmp_path, full, replay, script)
    events = store.frame("events")
    assert events["kind"].iloc[-1] == "restart"
    assert trader.books["BTC/USD"].last_ts == store.frame("ticks")["ts"].max()
    assert trader.books["BTC/USD"].bars == done
    summary = trader.run()
    assert summary.status == "ended" and summary.ticks == N - done  # nothing processed twice

    expected = backtest_script(replay, feats, script)
    fills = trader_fills(store)
    assert_same_fills(fills, expected.fills)  # none lost, none duplicated
    assert not fills.duplicated(["client_id", "ts"]).any()
    ticks = store.frame("ticks")
    assert len(ticks) == N and ticks["ts"].is_unique
    np.testing.assert_allclose(ticks["equity"].to_numpy(), expected.equity, rtol=1e-9)
    orders = store.frame("orders")
    assert orders["client_id"].is_unique and set(fills["client_id"]) <= set(orders["client_id"])
    assert (orders["style"] == "limit").sum() > 20


def test_sigkill_with_a_working_limit_order_keeps_its_state(tmp_path, btc_30m):
    """Killed right after the candle that placed a limit order (it fills after the restart):
    its price, last candle, on-expire rule and size come back from the state file; `trade
    status` shows it; the rest of the replay equals the backtest."""
    n = 400
    full, replay, feats, script = _setup(btc_30m, n)
    expected = backtest_script(replay, feats, script)
    decided = expected.decisions[expected.decisions["action"] == "target"]["bar"].to_numpy()
    fill_bars = set(expected.fills["bar"].tolist())
    # a limit order decided at bar k that fills later (working across the kill), in the middle
    k = next(int(b) for b in decided if b > 100 and b + 1 in fill_bars)
    db = tmp_path / "state.db"
    proc = _fork(_child_run, tmp_path, full, replay, script, k + 1)
    try:
        _wait_for_ticks(db, k + 1, proc)
        with read_only(db) as store:
            before = store.book("BTC/USD")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL and _ticks(db) == k + 1
    assert before["pending"] and before["order_style"] == "limit"
    assert before["order_last_bar"] == k + LIMITS.expire_bars and before["bars"] == k + 1

    status = CliRunner().invoke(trade_app, ["status", "--state-db", str(db)])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    (working,) = report["working_orders"]
    assert working["style"] == "limit" and working["limit_price"] == before["order_limit"]
    assert working["bars_left"] == LIMITS.expire_bars and working["on_expire"] == "market"
    assert working["client_id"] == before["order_id"]
    target = report["targets"]["BTC/USD"]
    assert target["policy_reason"] and target["target_position"] != 0

    trader, _, _, store = build_paper_trader(tmp_path, full, replay, script)
    restored = trader.books["BTC/USD"].to_dict()
    assert {key: restored[key] for key in BOOK_ORDER} == {key: before[key] for key in BOOK_ORDER}
    assert trader.run().status == "ended"
    fills = trader_fills(store)
    assert_same_fills(fills, expected.fills)
    assert (fills["client_id"] == before["order_id"]).any()  # the restored order filled
    np.testing.assert_allclose(store.frame("ticks")["equity"].to_numpy(), expected.equity,
                               rtol=1e-9)


def _child_cli(args: list[str], out_path) -> None:  # runs in a forked process
    """Run the CLI and exit with the status click chose. ``os._exit``: the fork inherits the
    pytest worker's state (e.g. multiprocessing finalizers registered by earlier tests), which
    must not run, or fail, in this child."""
    code = 1
    with open(out_path, "w") as out:
        sys.stdout = out  # pytest's capture object otherwise
        sys.stderr = out  # the error line of a failed run, for the assertion message
        try:
            trade_app(args)  # click raises SystemExit with the command's status
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc(file=out)
        finally:
            out.flush()
    os._exit(code)


def test_cli_sigterm_finishes_the_candle_and_exits_0(tmp_path, btc_30m):
    """`candlecast trade run --replay` in its own process against the HTTP signal contract
    (the service runs the policy for the position in each request): SIGTERM -> exit 0 with
    consistent state; `trade run` again completes the replay with the backtester's fills;
    `trade status` reports it."""
    n = 240
    full, replay, feats, script = _setup(btc_30m, n)
    CandleStore(tmp_path / "data" / "validated").upsert(
        SeriesId("bitfinex", "BTC/USD", "30m"), full)
    step = 1_800_000_000_000
    args = ["run", "--root", str(tmp_path), "--replay", "--replay-last", str(n), "--no-feast",
            "--endpoint", "predict"]
    with FakeSignalService(script, step) as svc:
        args += ["--service-url", svc.url]
        out_path = tmp_path / "stdout.txt"
        proc = _fork(_child_cli, [*args, "--speed", str(1800 / 0.02)], out_path)
        db = tmp_path / "data" / "trading" / "state.db"
        try:
            _wait_for_ticks(db, 40, proc)
            os.kill(proc.pid, signal.SIGTERM)
            proc.join(30)
        finally:
            if proc.is_alive():
                proc.kill()
        assert proc.exitcode == 0, out_path.read_text()[-3000:]
        summary = json.loads([line for line in out_path.read_text().splitlines()
                              if line.startswith("{")][-1])
        assert summary["status"] == "stopped" and summary["mode"] == "paper"
        stopped_at = _ticks(db)
        assert 40 <= stopped_at < n and summary["ticks"] == stopped_at
        with read_only(db) as store:  # the last candle's transaction is complete
            book = store.get("book:BTC/USD")
            assert book["last_ts"] == store.frame("ticks")["ts"].max()
            assert len(store.frame("bars")) == stopped_at

        result = CliRunner().invoke(trade_app, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.strip().splitlines()[-1])["ticks"] == n - stopped_at
        status = CliRunner().invoke(trade_app, ["status", "--root", str(tmp_path)])
        assert status.exit_code == 0
        report = json.loads(status.stdout)
        assert report["candles_processed"] == n and not report["kill_switch_file"]
        assert report["targets"]["BTC/USD"]["policy_reason"]
        bodies = [body for path, body in svc.requests if path == "/predict"]
        assert len(bodies) == n and {"position", "bars_held"} <= set(bodies[-1])
        assert any(body["position"] != 0.0 for body in bodies)

    expected = backtest_script(replay, feats, script)
    assert len(expected.fills) > 4
    with read_only(db) as store:
        assert_same_fills(trader_fills(store), expected.fills)
        held = store.frame("bars")["position"].to_numpy()
    np.testing.assert_allclose(held, pd.Series(expected.position).to_numpy(), rtol=1e-9,
                               atol=1e-12)
