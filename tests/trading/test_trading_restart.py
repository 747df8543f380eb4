"""Crash safety: a trader killed with SIGKILL mid-replay, or stopped with SIGTERM, continues
from its stored state with no duplicate orders, no lost fills, and the backtester's result."""

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
    build_paper_trader,
    replay_slice,
    sma_actions,
    trader_fills,
)
from typer.testing import CliRunner

from candlecast.backtest import BacktestConfig, CostConfig, run_event_driven
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.features import FeatureConfig
from candlecast.risk import RiskConfig
from candlecast.trading import StopFlag, read_only
from candlecast.trading.cli import trade_app

START, N = 6000, 900


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


def _child_run(tmp_path, full, replay, actions) -> None:  # runs in a forked process
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, actions,
                                             config={"state_sync": "FULL"})
    trader.stop = StopFlag().install()
    trader.run()
    store.close()


def test_sigkill_mid_replay_then_restart_matches_backtest(tmp_path, btc_30m):
    full, replay, feats = replay_slice(btc_30m, START, N, FeatureConfig())
    actions = sma_actions(btc_30m, START, N)
    db = tmp_path / "state.db"
    proc = multiprocessing.get_context("fork").Process(
        target=_child_run, args=(tmp_path, full, replay, actions))
    proc.start()
    try:
        _wait_for_ticks(db, 250, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no atexit, mid-candle most likely
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    done = _ticks(db)
    assert 250 <= done < N  # killed mid-replay

    trader, _, _, store = build_paper_trader(tmp_path, full, replay, actions)
    events = store.frame("events")
    assert events["kind"].iloc[-1] == "restart"
    assert trader.books["BTC/USD"].last_ts == store.frame("ticks")["ts"].max()
    summary = trader.run()
    assert summary.status == "ended" and summary.ticks == N - done  # nothing processed twice

    expected = run_event_driven(replay, actions, RiskConfig(), CostConfig(), BacktestConfig(),
                                atr=feats["atr"].to_numpy())
    fills = trader_fills(store)
    assert_same_fills(fills, expected.fills)  # none lost, none duplicated
    assert not fills.duplicated(["client_id", "ts"]).any()
    ticks = store.frame("ticks")
    assert len(ticks) == N and ticks["ts"].is_unique
    np.testing.assert_allclose(ticks["equity"].to_numpy(), expected.equity, rtol=1e-9)
    orders = store.frame("orders")
    assert orders["client_id"].is_unique and set(fills["client_id"]) <= set(orders["client_id"])


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
    """`candlecast trade run --replay` in its own process against the HTTP signal contract:
    SIGTERM -> exit 0 with consistent state; `trade run` again completes the replay with the
    backtester's fills; `trade status` reports it."""
    n = 240
    full, replay, feats = replay_slice(btc_30m, START, n, FeatureConfig())
    CandleStore(tmp_path / "data" / "validated").upsert(
        SeriesId("bitfinex", "BTC/USD", "30m"), full)
    actions = sma_actions(btc_30m, START, n)
    ts = pd.DatetimeIndex(replay["timestamp"]).asi8
    step = 1_800_000_000_000
    args = ["run", "--root", str(tmp_path), "--replay", "--replay-last", str(n), "--no-feast",
            "--endpoint", "predict"]
    with FakeSignalService(dict(zip(ts.tolist(), actions.tolist(), strict=True)), step) as svc:
        args += ["--service-url", svc.url]
        out_path = tmp_path / "stdout.txt"
        proc = multiprocessing.get_context("fork").Process(
            target=_child_cli, args=([*args, "--speed", str(1800 / 0.02)], out_path))
        proc.start()
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

    expected = run_event_driven(replay, actions, RiskConfig(), CostConfig(), BacktestConfig(),
                                atr=feats["atr"].to_numpy())
    assert len(expected.fills) > 4
    with read_only(db) as store:
        assert_same_fills(trader_fills(store), expected.fills)
