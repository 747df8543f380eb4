"""The trader's direct Feast online write equals ``write_to_online_store`` of the same row:
same online read (values and event times), same bytes in the SQLite online table."""

from __future__ import annotations

import sqlite3
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from candlecast.data.schema import SeriesId
from candlecast.features import FeatureConfig, IncrementalFeatureEngine, feature_names
from candlecast.trading.candles import bars_from_frame

SERIES = SeriesId("bitfinex", "BTC/USD", "30m")


def _repo(path, names, offline):
    from feast import FeatureStore

    from candlecast.feature_store.definitions import build_definitions

    path.mkdir()
    (path / "feature_store.yaml").write_text(
        "project: ccsink\nprovider: local\nregistry:\n  registry_type: file\n"
        f"  path: {path}/registry.db\nonline_store:\n  type: sqlite\n"
        f"  path: {path}/online.db\noffline_store:\n  type: duckdb\n"
        "entity_key_serialization_version: 3\n")
    offline.to_parquet(path / "features.parquet")
    store = FeatureStore(repo_path=str(path))
    store.apply(build_definitions(names, str(path / "features.parquet"), "svc",
                                  timedelta(hours=6)).all())
    return store


def _online_rows(path):
    with sqlite3.connect(path / "online.db") as conn:
        table = [r[0] for r in conn.execute(
            "select name from sqlite_master where type='table' and name like '%candle%'")][0]
        return conn.execute(f"select entity_key, feature_name, value, value_text, event_ts, "
                            f"created_ts from {table} order by feature_name").fetchall()


def _read(store, names):
    return store.get_online_features(
        features=[f"candle_features:{x}" for x in names],
        entity_rows=[{"series_id": SERIES.key}],
    ).to_dict(include_event_timestamps=True)


@pytest.mark.slow
def test_direct_online_write_reads_back_like_write_to_online_store(tmp_path, btc_30m):
    from candlecast.feature_store.definitions import view_columns
    from candlecast.feature_store.store import to_feast_table
    from candlecast.features import compute_features
    from candlecast.trading import FeastOnlineSink

    config = FeatureConfig()
    names = view_columns(feature_names(config))
    candles = btc_30m.iloc[:160].reset_index(drop=True)
    offline = to_feast_table(compute_features(candles.iloc[:60], config))
    old_store = _repo(tmp_path / "old", names, offline)
    new_store = _repo(tmp_path / "new", names, offline)
    old = FeastOnlineSink(tmp_path / "old", names, store=old_store, direct=False,
                          fast_commits=False)
    new = FeastOnlineSink(tmp_path / "new", names, store=new_store)
    # the new sink's store is in WAL mode (persistent: another connection sees it), the
    # other one in SQLite's default rollback journal; both read back the same below
    assert new.journal == "wal" and old.journal is None
    for kind, mode in (("new", "wal"), ("old", "delete")):
        with sqlite3.connect(tmp_path / kind / "online.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == mode
    engine = IncrementalFeatureEngine(config, timeframe=SERIES.timeframe)
    compared = 0
    for i, bar in enumerate(bars_from_frame(candles)):
        row = engine.update_values(*bar)
        if i < 3:  # warm-up rows have missing features: stored (and read) as missing
            assert any(np.isnan(row[n]) for n in names)
        old.write(SERIES, bar, row)
        new.write(SERIES, bar, row)
        if i < 5 or i % 17 == 0 or i == len(candles) - 1:
            got_old, got_new = _read(old_store, names), _read(new_store, names)
            assert got_old.keys() == got_new.keys()
            for key in got_old:  # exact: values (None for missing) and event times
                assert got_old[key] == got_new[key] or (
                    np.isnan(got_old[key][0]) and np.isnan(got_new[key][0])), key
            assert _online_rows(tmp_path / "old") == _online_rows(tmp_path / "new")
            compared += 1
    assert compared > 10
    close = pd.Timestamp(candles["timestamp"].iloc[-1], tz="UTC") + pd.Timedelta(minutes=30) \
        if candles["timestamp"].dt.tz is None else candles["timestamp"].iloc[-1] + \
        pd.Timedelta(minutes=30)
    stamp = _read(new_store, names)[f"{names[0]}__ts"][0]
    stamp = pd.Timestamp(stamp, unit="s", tz="UTC") if isinstance(stamp, int | float) \
        else pd.Timestamp(stamp)
    assert stamp == close


@pytest.mark.slow
def test_direct_write_skips_an_all_missing_row_like_feast(tmp_path, btc_30m):
    from candlecast.feature_store.definitions import view_columns
    from candlecast.feature_store.store import to_feast_table
    from candlecast.features import compute_features
    from candlecast.trading import FeastOnlineSink

    config = FeatureConfig()
    names = view_columns(feature_names(config))
    offline = to_feast_table(compute_features(btc_30m.iloc[:60], config))
    rows = {}
    for kind, direct in (("old", False), ("new", True)):
        store = _repo(tmp_path / kind, names, offline)
        sink = FeastOnlineSink(tmp_path / kind, names, store=store, direct=direct)
        bar = bars_from_frame(btc_30m.iloc[:1])[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sink.write(SERIES, bar, dict.fromkeys(names, float("nan")))
        assert any("empty feature columns" in str(w.message) for w in caught)
        rows[kind] = _online_rows(tmp_path / kind)
        with pytest.raises(KeyError):
            sink.write(SERIES, bar, {})
    assert rows["old"] == rows["new"] == []
