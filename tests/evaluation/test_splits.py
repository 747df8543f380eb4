"""Walk-forward splits: exact layouts by hand, and no-leakage properties for any parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from candlecast.data.sample import load_sample
from candlecast.evaluation.splits import (
    WalkForwardConfig,
    chronological_folds,
    chronological_validation_split,
    folds_table,
    walk_forward_splits,
)

# ---------------------------------------------------------------- hand-computed layouts


def test_expanding_layout_with_purge_and_embargo_by_hand():
    times = pd.date_range("2024-01-01", periods=25, freq="h", tz="UTC")
    config = WalkForwardConfig(train_size=5, test_size=5, horizon=2, embargo=1)
    folds = walk_forward_splits(times, config)
    # anchored at the end: tests [20,25), [15,20), [10,15); [5,10) would leave < 5 + 2 for training
    assert [list(f.test) for f in folds] == [
        list(range(10, 15)),
        list(range(15, 20)),
        list(range(20, 25)),
    ]
    assert list(folds[0].train) == list(range(0, 8))  # i + 2 < 10
    assert list(folds[1].train) == list(range(0, 13))  # i + 2 < 15; embargo 15 is fold 1's test
    # fold 2: i + 2 < 20, minus the embargo bar 15 right after fold 0's test window
    assert list(folds[2].train) == [*range(0, 15), 16, 17]
    assert folds[2].test_start == times[20] and folds[2].test_end == times[24]
    assert folds[2].train_end == times[17]


def test_rolling_window_has_fixed_length_before_purge():
    times = np.arange(40)
    config = WalkForwardConfig(scheme="rolling", train_size=6, test_size=10, horizon=3)
    folds = walk_forward_splits(times, config)
    assert [(f.test.min(), f.test.max()) for f in folds] == [(10, 19), (20, 29), (30, 39)]
    assert [list(f.train) for f in folds] == [
        list(range(1, 7)),
        list(range(11, 17)),
        list(range(21, 27)),
    ]


def test_step_larger_than_test_leaves_gaps_and_max_folds_keeps_latest():
    config = WalkForwardConfig(train_size=4, test_size=3, step=5, horizon=1, max_folds=2)
    folds = walk_forward_splits(np.arange(30), config)
    assert [list(f.test) for f in folds] == [[22, 23, 24], [27, 28, 29]]
    assert [f.index for f in folds] == [0, 1]


def test_stacked_series_share_the_time_axis_and_row_order_does_not_matter():
    t = pd.date_range("2024-01-01", periods=30, freq="30min", tz="UTC")
    frame = pd.DataFrame(
        {"timestamp": np.concatenate([t, t[3:]]), "series": ["a"] * 30 + ["b"] * 27}
    )
    config = WalkForwardConfig(train_size=10, test_size=5, horizon=1)
    folds = walk_forward_splits(frame["timestamp"], config)
    shuffled = frame.sample(frac=1.0, random_state=3)
    folds_shuffled = walk_forward_splits(shuffled["timestamp"], config)
    for f, g in zip(folds, folds_shuffled, strict=True):
        assert sorted(frame["timestamp"].iloc[f.test]) == sorted(shuffled["timestamp"].iloc[g.test])
        assert sorted(frame["timestamp"].iloc[f.train]) == sorted(
            shuffled["timestamp"].iloc[g.train]
        )
        # both series are cut at the same instants
        test_rows = frame.iloc[f.test]
        assert set(test_rows["series"]) == {"a", "b"}
        assert test_rows.groupby("series")["timestamp"].min().nunique() == 1


def test_label_end_purges_by_real_time_across_a_gap():
    # one series with a 5-bar hole: the label of the row before the hole ends after it
    t = pd.date_range("2024-01-01", periods=40, freq="h", tz="UTC")
    t = t.delete(range(20, 25))
    label_end = pd.Series(t).shift(-1)  # next row's time (the row-shifted label)
    config = WalkForwardConfig(train_size=10, test_size=5, horizon=1)
    folds = walk_forward_splits(t, config, label_end=label_end)
    for f in folds:
        assert (label_end.iloc[f.train] < f.test_start).all()
    # rows with an unknown label end (the last one) are never trained on
    assert all(len(t) - 1 not in f.train for f in folds)


def test_fold_table_and_describe():
    folds = walk_forward_splits(np.arange(50), WalkForwardConfig(train_size=10, test_size=10))
    table = folds_table(folds)
    assert list(table.columns) == [
        "fold",
        "n_train",
        "n_test",
        "train_start",
        "train_end",
        "test_start",
        "test_end",
    ]
    # tests [40,50), [30,40), [20,30); [10,20) would leave only 9 < 10 training steps after purge
    assert table["n_test"].tolist() == [10, 10, 10]
    assert table["n_train"].tolist() == [19, 29, 39]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 0},
        {"train_size": 0},
        {"test_size": 0},
        {"embargo": -1},
        {"test_size": 10, "step": 5},
        {"max_folds": 0},
        {"unknown": 1},
    ],
)
def test_invalid_config_is_rejected(kwargs):
    with pytest.raises(ValidationError):
        WalkForwardConfig(**kwargs)


def test_window_longer_than_data_names_the_sizes():
    config = WalkForwardConfig(train_size=100, test_size=50, horizon=2)
    with pytest.raises(ValueError, match=r"100 \+ 2 \+ 50 = 152 distinct timestamps, got 151"):
        walk_forward_splits(np.arange(151), config)
    assert len(walk_forward_splits(np.arange(152), config)) == 1


def test_missing_timestamps_are_rejected():
    times = pd.Series(pd.date_range("2024", periods=5, freq="h", tz="UTC"))
    times[3] = pd.NaT
    with pytest.raises(ValueError, match="first missing at row 3"):
        walk_forward_splits(times, WalkForwardConfig(train_size=1, test_size=1))


def test_label_end_before_its_own_time_is_rejected():
    times = np.arange(10)
    label_end = times + 1
    label_end[4] = 2
    with pytest.raises(ValueError, match="row 4"):
        walk_forward_splits(
            times, WalkForwardConfig(train_size=3, test_size=2), label_end=label_end
        )


# ---------------------------------------------------------------- inner splits


def test_chronological_validation_split_is_later_and_purged():
    times = np.repeat(np.arange(20), 2)  # two series
    train, val = chronological_validation_split(times, 0.25, horizon=2)
    assert sorted(set(times[val])) == [15, 16, 17, 18, 19]
    assert sorted(set(times[train])) == list(range(0, 13))
    with pytest.raises(ValueError, match="too few"):
        chronological_validation_split(np.arange(3), 0.5, horizon=2)


def test_chronological_folds_cover_the_later_blocks():
    folds = chronological_folds(np.arange(23), 3, horizon=1)
    assert [list(f.test) for f in folds] == [
        list(range(8, 13)),
        list(range(13, 18)),
        list(range(18, 23)),
    ]
    assert [f.train.max() for f in folds] == [6, 11, 16]
    with pytest.raises(ValueError, match="too few"):
        chronological_folds(np.arange(3), 3)


# ---------------------------------------------------------------- no leakage for any params


@st.composite
def layouts(draw):
    config = WalkForwardConfig(
        scheme=draw(st.sampled_from(["expanding", "rolling"])),
        train_size=draw(st.integers(1, 40)),
        test_size=(test_size := draw(st.integers(1, 20))),
        step=draw(st.one_of(st.none(), st.integers(test_size, test_size + 15))),
        horizon=draw(st.integers(1, 8)),
        embargo=draw(st.integers(0, 12)),
        max_folds=draw(st.one_of(st.none(), st.integers(1, 6))),
    )
    n = config.min_time_steps() + draw(st.integers(0, 120))
    n_series = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    with_label_end = draw(st.booleans())
    return config, n, n_series, seed, with_label_end


def _stacked_times(n, n_series, seed):
    """Several series on an hourly grid, each missing ~10% of bars, rows shuffled."""
    rng = np.random.default_rng(seed)
    grid = pd.date_range("2023-01-01", periods=n, freq="h", tz="UTC")
    parts = []
    for s in range(n_series):
        keep = rng.uniform(size=n) > 0.1
        if s == 0 and rng.uniform() < 0.5:
            keep[:] = True
        part = pd.DataFrame({"timestamp": grid[keep], "series": s})
        part["label_end"] = part["timestamp"].shift(-1)  # next row of the same series
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def _expected_folds(pos, label_end_ns, test_min_ns, config, n_axis):
    """The fold layout written out independently of the module: [(test rows, train rows)]."""
    h, emb = config.horizon, config.embargo
    windows = []
    end = n_axis
    while end - config.test_size >= config.train_size + h:
        windows.append((end - config.test_size, end))
        end -= config.effective_step
    windows = windows[::-1][-(config.max_folds or len(windows) or 1) :]
    out = []
    for start, end in windows:
        lowest = 0 if config.scheme == "expanding" else start - h - config.train_size
        allowed = (pos >= lowest) & (pos + h < start)
        for _, prev_end in windows:
            allowed &= ~((pos >= prev_end) & (pos < prev_end + emb))
        if label_end_ns is not None:
            first_test_ns = test_min_ns(start)
            allowed &= label_end_ns < first_test_ns  # NaT (min int) never reaches here
        test = np.flatnonzero((pos >= start) & (pos < end))
        out.append((test, np.flatnonzero(allowed)))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_no_leakage_for_any_parameters(layout):
    config, n, n_series, seed, with_label_end = layout
    frame = _stacked_times(n, n_series, seed)
    times = frame["timestamp"]
    label_end = frame["label_end"] if with_label_end else None
    t_ns = pd.DatetimeIndex(times).asi8
    uniq = np.unique(t_ns)
    if len(uniq) < config.min_time_steps():
        with pytest.raises(ValueError, match="distinct timestamps"):
            walk_forward_splits(times, config, label_end=label_end)
        return
    pos = np.searchsorted(uniq, t_ns)
    end_ns = None
    if label_end is not None:
        known = label_end.notna().to_numpy()
        end_ns = np.full(len(frame), np.iinfo(np.int64).max)  # unknown: never trainable
        end_ns[known] = pd.DatetimeIndex(label_end[known]).asi8
    expected = _expected_folds(pos, end_ns, lambda start: uniq[start], config, len(uniq))
    if any(len(train) == 0 for _, train in expected):
        with pytest.raises(ValueError, match="no training samples"):
            walk_forward_splits(times, config, label_end=label_end)
        return
    folds = walk_forward_splits(times, config, label_end=label_end)

    # the module builds exactly the independently written layout: nothing leaks, nothing
    # that the rules allow is dropped
    assert len(folds) == len(expected) >= 1
    for f, (test, train) in zip(folds, expected, strict=True):
        assert np.array_equal(np.sort(f.test), test)
        assert np.array_equal(np.sort(f.train), train)

    h, emb = config.horizon, config.embargo
    assert pos[folds[-1].test].max() == len(uniq) - 1  # anchored at the end
    if config.max_folds is None or len(folds) < config.max_folds:
        assert pos[folds[0].test].min() - config.effective_step < config.train_size + h
    previous_test_ends: list[int] = []
    for k, f in enumerate(folds):
        test_pos, train_pos = pos[f.test], pos[f.train]
        start, end = test_pos.min(), test_pos.max() + 1
        assert f.index == k
        assert end - start == config.test_size
        # purge: every training label ends before the test window starts
        assert (train_pos + h < start).all()
        if end_ns is not None:
            assert (end_ns[f.train] < t_ns[f.test].min()).all()
        # every test sample is strictly after every training sample
        assert t_ns[f.train].max() < t_ns[f.test].min()
        # embargo: nothing in the `embargo` steps after any earlier test window
        for prev_end in previous_test_ends:
            assert not ((train_pos >= prev_end) & (train_pos < prev_end + emb)).any()
        # test windows increase and never overlap
        if previous_test_ends:
            assert start >= previous_test_ends[-1]
        previous_test_ends.append(end)


def test_real_stacked_series_with_gaps(repo_root):
    frames = [
        load_sample(repo_root / "data" / "sample", "bitfinex_30m", symbol)
        for symbol in ("BTC/USD", "EOS/USD")
    ]
    for frame in frames:
        frame["label_end"] = frame["timestamp"].shift(-1)
    stacked = pd.concat(frames, ignore_index=True)
    config = WalkForwardConfig(train_size=8000, test_size=4000, horizon=1, embargo=48)
    folds = walk_forward_splits(stacked["timestamp"], config, label_end=stacked["label_end"])
    assert len(folds) >= 5
    for f in folds:
        train, test = stacked.iloc[f.train], stacked.iloc[f.test]
        assert train["label_end"].max() < test["timestamp"].min()
        assert set(test["symbol"]) == {"BTC/USD", "EOS/USD"}
    assert folds[-1].test_end == stacked["timestamp"].max()
