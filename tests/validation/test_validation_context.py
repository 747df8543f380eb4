"""The committed GX file context: matches the code, reuse is read-only, Data Docs, the writer,
the config and the helper columns GX checks."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from candlecast.data.sample import load_sample
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.validation import (
    QUARANTINE_COLUMNS,
    ValidationConfig,
    ValidationFailed,
    build_candle_suite,
    build_data_docs,
    open_candle_context,
    save_candle_suite,
    stored_suite_json,
    validate_candles,
    write_validation_outcome,
)
from candlecast.validation.frame import gx_frame, steps_since_previous
from candlecast.validation.suite import GX_COLUMNS, comparable_suite

NOW = pd.Timestamp("2024-05-01 12:00", tz="UTC")


def snapshot(root: Path) -> dict[str, str]:
    """Hashes of every committed (non-``uncommitted``) file under a context root."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "uncommitted" not in p.parts
    }


@pytest.fixture(scope="module")
def committed(repo_root: Path) -> Path:
    return repo_root / "expectations"


@pytest.fixture(scope="module")
def context_copy(tmp_path_factory, committed: Path) -> Path:
    root = tmp_path_factory.mktemp("ctx") / "expectations"
    shutil.copytree(committed, root, ignore=shutil.ignore_patterns("uncommitted"))
    return root


@pytest.fixture(scope="module")
def two_series(context_copy, btc_30m, repo_root):
    """Real BTC and ETH candles interleaved row by row, ETH with a price spike; validated once."""
    a = btc_30m.iloc[:300]
    b = load_sample(repo_root / "data" / "sample", "bitfinex_30m", "ETH/USD").iloc[:300].copy()
    assert (a["timestamp"].diff().dropna() == pd.Timedelta("30min")).all()
    assert (b["timestamp"].diff().dropna() == pd.Timedelta("30min")).all()
    b.loc[60, ["open", "high", "low", "close"]] *= 2.0
    candles = pd.concat([a, b]).sort_index(kind="stable").reset_index(drop=True)
    config = ValidationConfig(quarantine_extreme_returns=True, max_bad_fraction=0.05)
    return candles, validate_candles(candles, config, context_copy, now=NOW)


# --- the committed context ---------------------------------------------------------------------


def test_committed_suite_matches_the_code(committed):
    stored = comparable_suite(stored_suite_json(committed))
    built = comparable_suite(build_candle_suite().to_json_dict())
    assert stored == built, "run candlecast.validation.save_candle_suite('expectations')"


def test_committed_checkpoint_lists_every_bad_row_by_row_id(committed):
    checkpoint = json.loads((committed / "gx" / "checkpoints" / "candles.json").read_text())
    assert checkpoint["result_format"]["result_format"] == "COMPLETE"
    assert checkpoint["result_format"]["unexpected_index_column_names"] == ["gx_row_id"]
    definition = json.loads(
        (committed / "gx" / "validation_definitions" / "candles.json").read_text()
    )
    suite = stored_suite_json(committed)
    assert definition["suite"] == {"id": suite["id"], "name": "candles"}
    assert [v["id"] for v in checkpoint["validation_definitions"]] == [definition["id"]]


def test_committed_config_turns_analytics_and_progress_bars_off(committed):
    config = yaml.safe_load((committed / "gx" / "great_expectations.yml").read_text())
    assert config["analytics_enabled"] is False
    assert config["progress_bars"]["globally"] is False
    asset = config["fluent_datasources"]["candles"]["assets"]["candles"]
    assert asset["type"] == "dataframe" and "whole_dataframe" in asset["batch_definitions"]
    assert "gx/uncommitted/" in (committed / ".gitignore").read_text()


def test_reopening_and_resaving_leave_committed_files_byte_identical(context_copy, two_series):
    before = snapshot(context_copy)
    open_candle_context(context_copy)
    save_candle_suite(context_copy)
    assert snapshot(context_copy) == before
    assert "gx/expectations/candles.json" in before


def test_a_fresh_context_is_built_from_code_and_is_stable(tmp_path):
    root = tmp_path / "fresh"
    opened = open_candle_context(root)
    assert opened.checkpoint.name == "candles"
    assert comparable_suite(stored_suite_json(root)) == comparable_suite(
        build_candle_suite().to_json_dict()
    )
    first = snapshot(root)
    open_candle_context(root)
    assert snapshot(root) == first


# --- multi-series and the extreme-return policy ------------------------------------------------


def test_interleaved_series_are_checked_per_series(two_series):
    candles, outcome = two_series
    # no false duplicates/order errors across series; only the spike's two returns are bad
    spike_rows = set(np.flatnonzero((candles["symbol"] == "ETH/USD").to_numpy()))
    spike = sorted(spike_rows)[60:62]
    assert outcome.summary["rule_counts"] == {"extreme_log_return": 2}
    assert set(outcome.quarantine["input_row"]) == set(spike)
    assert outcome.summary["outlier_action"] == "quarantined"
    assert outcome.summary["gap_count"] == 0
    assert len(outcome.valid) == len(candles) - 2


# --- Data Docs and the writer ------------------------------------------------------------------


def test_data_docs_render_into_a_folder(context_copy, two_series, tmp_path):
    index = build_data_docs(context_copy, tmp_path / "docs")
    assert index == (tmp_path / "docs" / "index.html").resolve()
    html = index.read_text()
    assert "candles" in html
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))
    config = yaml.safe_load((context_copy / "gx" / "great_expectations.yml").read_text())
    assert list(config["data_docs_sites"]) == ["local_site"]  # export site not persisted


def test_data_docs_default_to_the_context_local_site(context_copy, two_series):
    index = build_data_docs(context_copy)
    assert index == context_copy / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert index.exists()


def test_writer_round_trips_the_outcome(two_series, tmp_path):
    _, outcome = two_series
    paths = {
        "valid_path": tmp_path / "valid.parquet",
        "quarantine_path": tmp_path / "quarantine.parquet",
        "result_path": tmp_path / "gx_result.json",
        "summary_path": tmp_path / "summary.json",
    }
    write_validation_outcome(outcome, **paths)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["valid_path"]), outcome.valid)
    quarantine = pd.read_parquet(paths["quarantine_path"])
    pd.testing.assert_frame_equal(quarantine, outcome.quarantine)
    assert list(quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert json.loads(paths["summary_path"].read_text()) == outcome.summary
    assert json.loads(paths["result_path"].read_text()) == outcome.gx_result


def test_writer_records_a_rejected_table_without_a_valid_table(two_series, tmp_path):
    _, outcome = two_series
    failure = ValidationFailed("rejected", outcome.summary, outcome.gx_result, outcome)
    write_validation_outcome(
        failure,
        valid_path=tmp_path / "valid.parquet",
        quarantine_path=tmp_path / "quarantine.parquet",
        result_path=None,
        summary_path=tmp_path / "summary.json",
    )
    assert not (tmp_path / "valid.parquet").exists()
    assert len(pd.read_parquet(tmp_path / "quarantine.parquet")) == len(outcome.quarantine)
    assert json.loads((tmp_path / "summary.json").read_text()) == outcome.summary


def test_validation_failed_survives_pickling(two_series):
    _, outcome = two_series
    failure = ValidationFailed("too many bad rows", outcome.summary, outcome.gx_result, outcome)
    copy = pickle.loads(pickle.dumps(failure))
    assert isinstance(copy, ValueError) and str(copy) == "too many bad rows"
    assert copy.summary == outcome.summary
    pd.testing.assert_frame_equal(copy.outcome.quarantine, outcome.quarantine)


# --- config and helper columns (pure, no GX) ---------------------------------------------------


def test_config_is_frozen_strict_and_range_checked():
    config = ValidationConfig()
    assert (config.max_bad_fraction, config.quarantine_extreme_returns) == (0.01, False)
    with pytest.raises(ValidationError):
        config.max_bad_fraction = 0.5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ValidationConfig(max_bad_fraction=1.5)
    with pytest.raises(ValidationError):
        ValidationConfig(max_abs_log_return=0.0)
    with pytest.raises(ValidationError):
        ValidationConfig(max_bad_fracton=0.1)  # type: ignore[call-arg]


def test_steps_are_measured_from_the_running_front_of_each_series(candle_factory):
    candles = candle_factory(6, timeframe="30m")
    step = pd.Timedelta("30min")
    start = candles["timestamp"][0]
    candles["timestamp"] = [start + k * step for k in (0, 1, 4, 2, 5, 7)]
    steps = steps_since_previous(candles)
    # row 3 goes back (2 < 4): -2; row 4 is judged against 4, not the out-of-order 2
    assert steps.tolist()[1:] == [1.0, 3.0, -2.0, 1.0, 2.0]
    assert np.isnan(steps[0])


def test_gx_frame_keeps_the_input_and_refuses_reserved_columns(btc_30m):
    frame = gx_frame(btc_30m.iloc[:50])
    assert tuple(frame.columns) == GX_COLUMNS
    pd.testing.assert_frame_equal(frame.loc[:, list(CANDLE_COLUMNS)], btc_30m.iloc[:50])
    with pytest.raises(ValueError, match="reserved validation column"):
        gx_frame(frame)
