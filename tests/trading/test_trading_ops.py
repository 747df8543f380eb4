"""Operating the trader: pause/resume, kill without flattening + reset, bad candles, settings
that must not change under a stored state, and the Feast online write."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trading_helpers import (
    assert_same_fills,
    backtest_script,
    build_paper_trader,
    make_script,
    replay_slice,
    trader_fills,
)
from typer.testing import CliRunner

from candlecast.features import FeatureConfig
from candlecast.risk import RiskConfig
from candlecast.trading import StateStore
from candlecast.trading.cli import trade_app

START, N = 6000, 400
STOPS = {"stop_loss", "chandelier_stop", "breakeven_stop", "trailing_stop"}


@pytest.fixture(name="slice_")
def slice_fixture(btc_30m):
    full, replay, feats = replay_slice(btc_30m, START, N, FeatureConfig())
    script = make_script(replay, feats, btc_30m, START, seed=4, horizon=4, entry_margin=1.0,
                         exit_margin=0.0, min_hold_bars=2, vol_target=0.5, allow_short=True)
    return full, replay, feats, script


def test_pause_ignores_signals_but_keeps_stops(tmp_path, slice_):
    full, replay, feats, script = slice_
    trader, signals, _, store = build_paper_trader(tmp_path, full, replay, script)
    lo, hi = 120, 220
    trader.run(max_ticks=lo)
    result = CliRunner().invoke(trade_app, ["pause", "--pause-file", str(tmp_path / "PAUSE")])
    assert result.exit_code == 0, result.output
    trader.run(max_ticks=hi - lo)
    CliRunner().invoke(trade_app, ["resume", "--pause-file", str(tmp_path / "PAUSE")])
    assert trader.run().status == "ended"
    expected = backtest_script(replay, feats, script, held=range(lo, hi))
    fills = trader_fills(store)
    assert_same_fills(fills, expected.fills)
    plain = backtest_script(replay, feats, script)
    assert len(plain.fills) != len(expected.fills)  # the pause made a difference
    stamps = pd.DatetimeIndex(replay["timestamp"]).asi8
    paused = fills[(fills["ts"] >= stamps[lo]) & (fills["ts"] <= stamps[hi - 1])]
    assert set(paused["reason"]) & STOPS  # stops acted during the pause
    assert signals.calls == N - (hi - lo)  # the service was not asked while paused
    kinds = list(store.frame("events")["kind"])
    assert kinds.count("pause") == 1 and kinds.count("resume") == 1
    bars = store.frame("bars")
    assert (bars["signal_status"] == "paused").sum() == hi - lo


def test_kill_without_flatten_then_reset(tmp_path, slice_):
    full, replay, _, script = slice_
    kill_file = tmp_path / "KILL"
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, script,
                                             config={"flatten_on_kill": False})
    book = trader.books["BTC/USD"]
    for _ in range(N):  # run until a position is open and an order is working
        trader.run(max_ticks=1)
        if book.pos != 0.0 and book.pending:
            break
    assert book.pending
    held = book.pos
    result = CliRunner().invoke(trade_app, ["kill", "--reason", "operator test",
                                            "--kill-switch-file", str(kill_file)])
    assert result.exit_code == 0 and kill_file.read_text() == "operator test"
    assert trader.run().status == "killed"
    assert book.pos == held and not book.pending  # order cancelled, position kept
    assert store.order(book.order_id)["status"] == "canceled"
    assert store.frame("events")["message"].str.contains("operator test").any()
    store.close()
    db = ["--state-db", str(tmp_path / "state.db"), "--kill-switch-file", str(kill_file)]
    refused = CliRunner().invoke(trade_app, ["reset-kill", *db])
    assert refused.exit_code == 1 and "remove the kill switch file" in refused.output
    kill_file.unlink()
    assert CliRunner().invoke(trade_app, ["reset-kill", *db]).exit_code == 0
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, script,
                                             config={"flatten_on_kill": False})
    assert not trader.account.killed
    assert trader.run().status == "ended"
    assert len(store.frame("ticks")) == N


def test_bad_candle_is_skipped_and_reported(tmp_path, slice_):
    full, replay, _, script = slice_
    broken = full.copy()
    row = len(full) - N + 50
    broken.loc[row, "high"] = broken.loc[row, "low"] * 0.5  # high below low
    trader, _, _, store = build_paper_trader(tmp_path, broken, replay, script)
    assert trader.run().status == "ended"
    events = store.frame("events")
    bad = events[events["kind"] == "bad_candle"]
    assert len(bad) == 1 and "ohlc_consistent" in bad["message"].iloc[0]
    ticks = store.frame("ticks")
    assert len(ticks) == N - 1
    assert int(pd.Timestamp(full["timestamp"].iloc[row]).value) not in set(ticks["ts"])
    assert (events["kind"] == "gap").sum() >= 1  # the candle after it follows a hole


def test_stored_state_refuses_changed_settings(tmp_path, slice_):
    full, replay, _, script = slice_
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, script)
    trader.run(max_ticks=5)
    store.close()
    with pytest.raises(ValueError, match="different settings.*risk"):
        build_paper_trader(tmp_path, full, replay, script,
                           risk=RiskConfig(exits={"stop_atr_multiple": 3.0}))
    with StateStore(tmp_path / "state.db") as old:  # as the -1/0/+1 signal trader wrote it
        fingerprint = old.get("fingerprint")
        del fingerprint["state_format"]
        with old.transaction():
            old.put("fingerprint", fingerprint)
    with pytest.raises(ValueError, match="older trader.*target positions"):
        build_paper_trader(tmp_path, full, replay, script)


@pytest.mark.slow
def test_feast_online_store_gets_each_candle_at_its_close(tmp_path, slice_):
    """A real Feast repository (SQLite online store): after the trader's writes, Feast serves
    the last candle's features with event time = its close."""
    from datetime import timedelta

    from feast import FeatureStore

    from candlecast.data.schema import SeriesId
    from candlecast.feature_store.definitions import build_definitions
    from candlecast.feature_store.store import to_feast_table
    from candlecast.features import compute_features, feature_names
    from candlecast.trading import FeastOnlineSink

    full, replay, feats, script = slice_
    names = feature_names(FeatureConfig())
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        "project: cctrade\nprovider: local\nregistry:\n  registry_type: file\n"
        f"  path: {repo}/registry.db\nonline_store:\n  type: sqlite\n"
        f"  path: {repo}/online.db\noffline_store:\n  type: duckdb\n"
        "entity_key_serialization_version: 3\n")
    to_feast_table(compute_features(full.iloc[:100], FeatureConfig())).to_parquet(
        repo / "features.parquet")
    feast = FeatureStore(repo_path=str(repo))
    feast.apply(build_definitions(names, str(repo / "features.parquet"), "svc",
                                  timedelta(hours=6)).all())
    sink = FeastOnlineSink(repo, names, store=feast)
    n = 30
    trader, _, _, _ = build_paper_trader(tmp_path, full.iloc[:len(full) - N + n],
                                         replay.iloc[:n], script)
    memory = trader.sink  # the scripted service reads this one

    class Both:
        def write(self, *args):
            sink.write(*args)
            memory.write(*args)

    trader.sink = Both()
    assert trader.run().status == "ended"
    key = SeriesId("bitfinex", "BTC/USD", "30m").key
    got = feast.get_online_features(features=[f"candle_features:{x}" for x in names],
                                    entity_rows=[{"series_id": key}]
                                    ).to_dict(include_event_timestamps=True)
    last = feats.iloc[n - 1]
    np.testing.assert_allclose([got[x][0] for x in names], last[names].to_numpy(float),
                               rtol=1e-9, atol=1e-12)
    close = replay["timestamp"].iloc[n - 1] + pd.Timedelta(minutes=30)
    raw = got[f"{names[0]}__ts"][0]  # Feast returns epoch seconds
    stamp = pd.Timestamp(raw, unit="s", tz="UTC") if isinstance(raw, int | float) \
        else pd.Timestamp(raw)
    assert stamp == close
