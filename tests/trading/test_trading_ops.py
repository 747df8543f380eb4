"""Operating the trader: pause/resume, kill without flattening + reset, bad candles, settings
that must not change under a stored state, and the Feast online write."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trading_helpers import (
    assert_same_fills,
    build_paper_trader,
    replay_slice,
    sma_actions,
    trader_fills,
)
from typer.testing import CliRunner

from candlecast.backtest import BacktestConfig, CostConfig, run_event_driven
from candlecast.features import FeatureConfig
from candlecast.risk import RiskConfig
from candlecast.trading.cli import trade_app

START, N = 6000, 400


@pytest.fixture(name="slice_")
def slice_fixture(btc_30m):
    full, replay, feats = replay_slice(btc_30m, START, N, FeatureConfig())
    return full, replay, feats, sma_actions(btc_30m, START, N)


def test_pause_ignores_signals_but_keeps_stops(tmp_path, slice_):
    full, replay, feats, actions = slice_
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, actions)
    lo, hi = 120, 220
    trader.run(max_ticks=lo)
    result = CliRunner().invoke(trade_app, ["pause", "--pause-file", str(tmp_path / "PAUSE")])
    assert result.exit_code == 0, result.output
    trader.run(max_ticks=hi - lo)
    CliRunner().invoke(trade_app, ["resume", "--pause-file", str(tmp_path / "PAUSE")])
    assert trader.run().status == "ended"
    held = actions.copy()
    held[lo:hi] = actions[lo - 1]
    expected = run_event_driven(replay, held, RiskConfig(), CostConfig(), BacktestConfig(),
                                atr=feats["atr"].to_numpy())
    assert_same_fills(trader_fills(store), expected.fills)
    plain = run_event_driven(replay, actions, RiskConfig(), CostConfig(), BacktestConfig(),
                             atr=feats["atr"].to_numpy())
    assert len(plain.fills) != len(expected.fills)  # the pause made a difference
    kinds = list(store.frame("events")["kind"])
    assert kinds.count("pause") == 1 and kinds.count("resume") == 1
    bars = store.frame("bars")
    assert (bars["signal_status"] == "paused").sum() == hi - lo


def test_kill_without_flatten_then_reset(tmp_path, slice_):
    full, replay, _, actions = slice_
    kill_file = tmp_path / "KILL"
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, actions,
                                             config={"flatten_on_kill": False})
    book = trader.books["BTC/USD"]
    for _ in range(N):  # run until a position is open and an order is working
        trader.run(max_ticks=1)
        if book.pos != 0.0 and not book.pending and actions[len(store.frame("ticks"))] != \
                actions[len(store.frame("ticks")) - 1]:
            break
    trader.run(max_ticks=1)  # the signal change: a working exit order now
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
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, actions,
                                             config={"flatten_on_kill": False})
    assert not trader.account.killed
    assert trader.run().status == "ended"
    assert len(store.frame("ticks")) == N


def test_bad_candle_is_skipped_and_reported(tmp_path, slice_):
    full, replay, _, actions = slice_
    broken = full.copy()
    row = len(full) - N + 50
    broken.loc[row, "high"] = broken.loc[row, "low"] * 0.5  # high below low
    trader, _, _, store = build_paper_trader(tmp_path, broken, replay, actions)
    assert trader.run().status == "ended"
    events = store.frame("events")
    bad = events[events["kind"] == "bad_candle"]
    assert len(bad) == 1 and "ohlc_consistent" in bad["message"].iloc[0]
    ticks = store.frame("ticks")
    assert len(ticks) == N - 1
    assert int(pd.Timestamp(full["timestamp"].iloc[row]).value) not in set(ticks["ts"])
    assert (events["kind"] == "gap").sum() >= 1  # the candle after it follows a hole


def test_stored_state_refuses_changed_settings(tmp_path, slice_):
    full, replay, _, actions = slice_
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, actions)
    trader.run(max_ticks=5)
    store.close()
    with pytest.raises(ValueError, match="different settings.*risk"):
        build_paper_trader(tmp_path, full, replay, actions,
                           risk=RiskConfig(exits={"stop_atr_multiple": 3.0}))


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

    full, replay, feats, actions = slice_
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
                                         replay.iloc[:n], actions[:n])
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
