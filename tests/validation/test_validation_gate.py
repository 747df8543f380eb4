"""The GX candle gate on real data: clean data passes untouched, injected faults are caught.

GX runs are slow-ish, so each scenario validates once in a module-scoped fixture and many tests
read its outcome. The context is a temp copy of the committed ``expectations/`` folder, so the
tests exercise the stored suite and checkpoint (not a suite rebuilt for the test).
"""

from __future__ import annotations

import json
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from candlecast.data.sample import load_sample
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.validation import (
    QUARANTINE_COLUMNS,
    CandleSchemaError,
    ValidationConfig,
    ValidationFailed,
    validate_candles,
)

NOW = pd.Timestamp("2024-05-01 12:00", tz="UTC")
STEP = pd.Timedelta("30min")

# Injected faults, at rows well away from each other and from the file's real gaps.
NAN_CLOSE, ZERO_LOW, HIGH_BELOW, LOW_ABOVE, NEG_VOLUME = 1000, 2000, 3000, 4000, 5000
DUPLICATE = 6000  # gets the timestamp of row 5999
SWAP = 7000  # rows 7000 and 7001 swap timestamps: 7001 goes back in time
SPIKE = 9000  # OHLC x1.5: extreme returns into 9000 and out of it (9001)
TOO_CLOSE = 10000  # 10 minutes early: spacing below the timeframe
BAD_SYMBOL = 11000
DROPPED = (20001, 20002, 20003)  # removed last, so the positions above stay valid

EXPECTED_RULE_ROWS = {
    "close_not_null": {NAN_CLOSE},
    "low_positive": {ZERO_LOW},
    "low_le_open": {LOW_ABOVE},
    "low_le_close": {LOW_ABOVE},
    "high_ge_open": {HIGH_BELOW},
    "high_ge_close": {HIGH_BELOW},
    "volume_non_negative": {NEG_VOLUME},
    "timestamp_unique_per_series": {DUPLICATE - 1, DUPLICATE},
    "timestamp_increasing": {DUPLICATE, SWAP + 1},
    "spacing_not_below_timeframe": {TOO_CLOSE},
    "symbol_format": {BAD_SYMBOL},
}


@contextmanager
def no_network():
    """Fail any socket use that is not loopback, and record the attempts."""
    attempts: list[object] = []
    real_connect, real_create, real_getaddrinfo = (
        socket.socket.connect,
        socket.create_connection,
        socket.getaddrinfo,
    )

    def local(address: object) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        return isinstance(host, str) and host in ("127.0.0.1", "localhost", "::1")

    def connect(self, address):  # type: ignore[no-untyped-def]
        if not local(address) and self.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError(f"network disabled in test: {address}")
        return real_connect(self, address)

    def create_connection(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not local(address):
            attempts.append(address)
            raise OSError(f"network disabled in test: {address}")
        return real_create(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not local((host,)):
            attempts.append(host)
            raise OSError(f"network disabled in test: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.create_connection = create_connection  # type: ignore[assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.create_connection = real_create
        socket.getaddrinfo = real_getaddrinfo


@pytest.fixture(scope="module")
def context_root(tmp_path_factory, repo_root: Path) -> Path:
    """A copy of the committed GX context (without its uncommitted run artefacts)."""
    root = tmp_path_factory.mktemp("gx") / "expectations"
    shutil.copytree(repo_root / "expectations", root, ignore=shutil.ignore_patterns("uncommitted"))
    return root


@pytest.fixture(scope="module")
def network_attempts() -> list[object]:
    return []


@pytest.fixture(scope="module")
def clean(btc_30m, context_root, network_attempts):
    with no_network() as attempts:
        outcome = validate_candles(btc_30m, ValidationConfig(), context_root, now=NOW)
    network_attempts.extend(attempts)
    return outcome


def inject_faults(candles: pd.DataFrame) -> pd.DataFrame:
    bad = candles.copy()
    for row in (NAN_CLOSE, ZERO_LOW, HIGH_BELOW, LOW_ABOVE, DUPLICATE, SWAP, SPIKE, TOO_CLOSE):
        around = bad["timestamp"].iloc[row - 1 : row + 3].diff().iloc[1:]
        assert (around == STEP).all(), f"row {row} is next to a real gap; pick another row"
    bad.loc[NAN_CLOSE, "close"] = np.nan
    bad.loc[ZERO_LOW, "low"] = 0.0
    bad.loc[HIGH_BELOW, "high"] = bad.loc[HIGH_BELOW, ["open", "close"]].min() * 0.99
    bad.loc[LOW_ABOVE, "low"] = bad.loc[LOW_ABOVE, ["open", "close"]].max() * 1.01
    bad.loc[NEG_VOLUME, "volume"] = -1.0
    bad.loc[DUPLICATE, "timestamp"] = bad.loc[DUPLICATE - 1, "timestamp"]
    first, second = bad.loc[SWAP, "timestamp"], bad.loc[SWAP + 1, "timestamp"]
    bad.loc[SWAP, "timestamp"], bad.loc[SWAP + 1, "timestamp"] = second, first
    bad.loc[SPIKE, ["open", "high", "low", "close"]] *= 1.5
    bad.loc[TOO_CLOSE, "timestamp"] -= pd.Timedelta("10min")
    bad.loc[BAD_SYMBOL, "symbol"] = "btc-usd"
    return bad.drop(index=list(DROPPED)).reset_index(drop=True)


@pytest.fixture(scope="module")
def faulty_input(btc_30m) -> pd.DataFrame:
    return inject_faults(btc_30m)


@pytest.fixture(scope="module")
def faulty(faulty_input, context_root, network_attempts):
    with no_network() as attempts:
        outcome = validate_candles(faulty_input, ValidationConfig(), context_root, now=NOW)
    network_attempts.extend(attempts)
    return outcome


def real_gaps(candles: pd.DataFrame) -> pd.Series:
    """Independent gap finder for a sorted single series: steps larger than the timeframe."""
    steps = candles["timestamp"].diff()
    return steps[steps > STEP]


# --- clean real data -------------------------------------------------------------------------


def test_clean_real_data_passes_untouched(clean, btc_30m):
    pd.testing.assert_frame_equal(clean.valid, btc_30m)
    assert clean.quarantine.empty
    assert list(clean.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert clean.summary["bad_rows"] == 0
    assert clean.summary["success"] is True
    assert clean.summary["rule_counts"] == {}


def test_clean_real_gaps_are_reported_not_quarantined(clean, btc_30m):
    expected = real_gaps(btc_30m)
    assert len(expected) == 9  # PROVENANCE.md: 9-17 gaps per file; BTC has 9
    assert clean.summary["gap_count"] == len(expected)
    assert clean.summary["largest_gap_seconds"] == expected.max().total_seconds()
    assert clean.summary["missing_candles"] == int(sum(expected / STEP - 1))
    resumes = {g["resumes_at"] for g in clean.summary["gaps"]}
    assert resumes == {btc_30m["timestamp"][i].isoformat() for i in expected.index}
    # a gap makes the GX run unsuccessful (warning-severity expectation) but is no bad row
    assert clean.summary["gx_success"] is False


def test_clean_real_data_has_no_extreme_returns_at_default_bound(clean, btc_30m):
    biggest = np.abs(np.log(btc_30m["close"]).diff()).max()
    assert biggest < ValidationConfig().max_abs_log_return
    assert clean.summary["outlier_count"] == 0


def test_gx_result_is_json_and_names_every_rule(clean):
    text = json.dumps(clean.gx_result, allow_nan=False)
    assert json.loads(text) == clean.gx_result
    rules = {r["expectation_config"]["meta"]["rule"] for r in clean.gx_result["results"]}
    assert set(EXPECTED_RULE_ROWS) <= rules
    assert {"timestamp_gap", "extreme_log_return", "columns_canonical"} <= rules
    json.dumps(clean.summary, allow_nan=False)


def test_gx_did_not_touch_the_network(clean, faulty, network_attempts):
    assert network_attempts == []


# --- injected faults --------------------------------------------------------------------------


def test_each_injected_fault_is_quarantined_under_its_rule(faulty):
    q = faulty.quarantine
    found = {rule: set(rows) for rule, rows in q.groupby("rule")["input_row"]}
    # a price pushed outside [low, high] breaks the pair rule(s) against open and/or close
    for rules in (("high_ge_open", "high_ge_close"), ("low_le_open", "low_le_close")):
        assert any(found.get(r) for r in rules)
        for r in rules:
            if r in found:
                assert found[r] == EXPECTED_RULE_ROWS[r]
    exact = {r: rows for r, rows in found.items() if not r.startswith(("high_ge", "low_le"))}
    expected = {
        r: rows for r, rows in EXPECTED_RULE_ROWS.items() if not r.startswith(("high_ge", "low_le"))
    }
    assert exact == expected
    assert faulty.summary["rule_counts"] == {r: len(rows) for r, rows in found.items()}


def test_quarantine_rows_carry_candle_values_reason_and_time(faulty, faulty_input):
    q = faulty.quarantine
    assert list(q.columns) == list(QUARANTINE_COLUMNS)
    pd.testing.assert_frame_equal(
        q.loc[:, list(CANDLE_COLUMNS)].reset_index(drop=True),
        faulty_input.iloc[q["input_row"]].reset_index(drop=True),
    )
    assert (q["quarantined_at"] == NOW).all()
    assert str(q["quarantined_at"].dtype) == "datetime64[ns, UTC]"
    reasons = dict(zip(q["rule"], q["reason"], strict=False))
    assert reasons["volume_non_negative"].startswith("volume must be >= 0")
    assert "volume=-1.0" in reasons["volume_non_negative"]
    assert "close is missing" in reasons["close_not_null"]
    assert "symbol=btc-usd" in reasons["symbol_format"]
    assert "gx_steps_since_previous=-1.0" in reasons["timestamp_increasing"]


def test_nothing_is_silently_dropped(faulty, faulty_input):
    bad = set(faulty.quarantine["input_row"])
    assert len(faulty.valid) + len(bad) == len(faulty_input)
    assert faulty.summary["bad_rows"] == len(bad) == 10
    assert faulty.summary["quarantine_rows"] == len(faulty.quarantine) > len(bad)
    # a row breaking two rules is listed once per rule but removed once
    assert faulty.quarantine.groupby("input_row")["rule"].count().max() >= 2
    expected_valid = faulty_input.drop(index=sorted(bad)).reset_index(drop=True)
    pd.testing.assert_frame_equal(faulty.valid, expected_valid)


def test_valid_rows_are_strictly_increasing_after_quarantine(faulty):
    assert faulty.valid["timestamp"].is_monotonic_increasing
    assert faulty.valid["timestamp"].is_unique


def test_gx_bad_rows_match_an_independent_pandas_check(faulty, faulty_input):
    f = faulty_input
    ts = f["timestamp"]
    earlier_max = ts.cummax().shift()
    pandas_bad = (
        f[list(CANDLE_COLUMNS)].isna().any(axis=1)
        | (f[["open", "high", "low", "close"]] <= 0).any(axis=1)
        | (f["high"] < f[["open", "close"]].max(axis=1))
        | (f["low"] > f[["open", "close"]].min(axis=1))
        | (f["volume"] < 0)
        | ts.duplicated(keep=False)
        | (ts <= earlier_max)
        | ((ts - earlier_max) < STEP)
        | ~f["symbol"].str.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+")
    )
    assert set(np.flatnonzero(pandas_bad)) == set(faulty.quarantine["input_row"])


def test_gaps_are_counted_including_injected_ones(faulty, clean):
    # real gaps + row after the duplicate + row after the swap + the row after the early one +
    # the row after the bad symbol (its series loses a row) + the 3 dropped candles
    assert faulty.summary["gap_count"] == clean.summary["gap_count"] + 5
    dropped_gap = [g for g in faulty.summary["gaps"] if g["missing_candles"] == 3]
    assert [g["input_row"] for g in dropped_gap] == [DROPPED[0]]
    assert set(faulty.quarantine["input_row"]).isdisjoint(g["input_row"] for g in dropped_gap)


def test_extreme_returns_are_flagged_not_quarantined(faulty, faulty_input):
    assert faulty.summary["outlier_count"] == 2
    assert {o["input_row"] for o in faulty.summary["outliers"]} == {SPIKE, SPIKE + 1}
    assert faulty.summary["outlier_action"] == "flagged"
    for o in faulty.summary["outliers"]:
        assert o["abs_log_return"] == pytest.approx(np.log(1.5), abs=0.05)
    assert SPIKE not in set(faulty.quarantine["input_row"])
    assert (faulty.valid["timestamp"] == faulty_input["timestamp"][SPIKE]).sum() == 1


# --- policy, schema errors and other real data ------------------------------------------------


def test_too_many_bad_rows_raise_with_rule_counts_and_outcome(btc_30m, context_root):
    candles = btc_30m.iloc[:2000].copy()
    candles.loc[100:139, "volume"] = -5.0  # 40 rows = 2% > 1%
    candles.loc[500, "close"] = np.nan
    with pytest.raises(ValidationFailed) as info:
        validate_candles(candles, ValidationConfig(max_bad_fraction=0.01), context_root, now=NOW)
    message = str(info.value)
    assert "41 of 2000 rows" in message
    assert "volume_non_negative=40" in message and "close_not_null=1" in message
    assert isinstance(info.value, ValueError)
    outcome = info.value.outcome
    assert outcome is not None
    assert info.value.summary["within_threshold"] is False
    assert set(outcome.quarantine["input_row"]) == {*range(100, 140), 500}
    assert len(outcome.valid) == 2000 - 41


def test_missing_column_is_a_clear_schema_error(btc_30m, context_root):
    with pytest.raises(CandleSchemaError, match=r"missing \['volume'\]"):
        validate_candles(
            btc_30m.iloc[:300].drop(columns="volume"), ValidationConfig(), context_root
        )


def test_wrong_dtype_is_a_clear_schema_error(btc_30m, context_root):
    candles = btc_30m.iloc[:300].copy()
    candles["close"] = candles["close"].astype(str)
    candles["timestamp"] = candles["timestamp"].dt.tz_localize(None)
    with pytest.raises(CandleSchemaError) as info:
        validate_candles(candles, ValidationConfig(), context_root)
    assert "close_dtype" in str(info.value) and "timestamp_dtype" in str(info.value)
    assert info.value.summary["schema_errors"] == ["timestamp_dtype", "close_dtype"]


def test_real_coinbase_defects_are_quarantined(context_root, repo_root):
    """The Coinbase file has real repeated and out-of-order hours (a clock mix-up in Nov 2017)."""
    candles = load_sample(repo_root / "data" / "sample", "coinbase_1h", "BTC/USD")
    outcome = validate_candles(candles, ValidationConfig(), context_root, now=NOW)
    ts = candles["timestamp"]
    expected = ts.duplicated(keep=False) | (ts <= ts.cummax().shift())
    assert expected.sum() > 0
    assert set(outcome.quarantine["input_row"]) == set(np.flatnonzero(expected))
    assert set(outcome.quarantine["rule"]) <= {
        "timestamp_unique_per_series",
        "timestamp_increasing",
    }
    assert (
        outcome.valid["timestamp"].is_monotonic_increasing and outcome.valid["timestamp"].is_unique
    )
    assert len(outcome.valid) + outcome.summary["bad_rows"] == len(candles)
