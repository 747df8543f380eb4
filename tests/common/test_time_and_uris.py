from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from candlecast.common.time import as_utc, naive_utc, utc_now_iso
from candlecast.common.uris import absolute_sqlite_uri


def test_as_utc_takes_naive_as_utc_and_converts_aware():
    assert as_utc("2024-01-31 12:00") == pd.Timestamp("2024-01-31 12:00", tz="UTC")
    assert as_utc("2024-01-31T12:00+02:00") == pd.Timestamp("2024-01-31 10:00", tz="UTC")
    assert str(as_utc(pd.Timestamp("2024-01-31T12:00+02:00")).tz) == "UTC"
    with pytest.raises(ValueError):
        as_utc("not a time")


def test_naive_utc_drops_the_zone_after_converting_and_leaves_the_input_alone():
    frame = pd.DataFrame({"t": pd.to_datetime(["2024-01-01T02:00+02:00"]), "x": [1.0]})
    out = naive_utc(frame, "t")
    assert out["t"].dt.tz is None and out["t"].iloc[0] == pd.Timestamp("2024-01-01 00:00")
    assert frame["t"].dt.tz is not None  # a copy


def test_utc_now_iso_is_now_in_utc():
    stamp = datetime.fromisoformat(utc_now_iso())
    assert stamp.utcoffset() == timedelta(0)
    assert abs(stamp - datetime.now(UTC)) < timedelta(seconds=5)
    assert len(utc_now_iso("milliseconds").split(".")[1]) == len("123+00:00")


def test_relative_sqlite_uris_are_taken_from_the_root(tmp_path: Path):
    assert absolute_sqlite_uri("sqlite:///mlruns.db", tmp_path) == \
        f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"
    assert absolute_sqlite_uri("sqlite:///a/../b.db", tmp_path) == \
        f"sqlite:///{tmp_path.resolve() / 'b.db'}"
    assert absolute_sqlite_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert absolute_sqlite_uri("sqlite:///~/m.db", tmp_path) == \
        f"sqlite:///{Path('~/m.db').expanduser()}"
    for other in ("http://127.0.0.1:5000", "file:///tmp/mlruns", "databricks"):
        assert absolute_sqlite_uri(other, tmp_path) == other
