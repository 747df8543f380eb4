"""Cross-sectional features: point in time, batch == incremental, the definitions by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from candlecast.data.sample import load_sample
from candlecast.feature_store.store import to_feast_table
from candlecast.features import compute_features
from candlecast.features.cross_section import (
    CrossSectionConfig,
    average_rank,
    coin_feature_names,
    compute_cross_section,
    cross_section_labels,
    universe_feature_names,
)
from candlecast.features.cross_section_engine import CrossSectionEngine

SYMBOLS = ["BTC/USD", "ETH/USD", "EOS/USD", "LTC/USD", "XRP/USD"]
SIDS = [f"bitfinex:{s}:30m" for s in SYMBOLS]
STEP = pd.Timedelta("30min")
CFG = CrossSectionConfig(enabled=True, beta_window=96, beta_min_periods=24, residual_window=16)


@pytest.fixture(scope="module")
def five_coins(repo_root) -> pd.DataFrame:
    """Features of a real 1,200-bar slice of the five bundled coins (with their real gaps)."""
    frames = []
    for symbol in SYMBOLS:
        candles = load_sample(repo_root / "data" / "sample", "bitfinex_30m", symbol)
        frames.append(to_feast_table(compute_features(candles.iloc[9000:10200])))
    return pd.concat(frames, ignore_index=True)


def _batch(features: pd.DataFrame, config: CrossSectionConfig = CFG,
           sids: list[str] = SIDS, symbols: list[str] = SYMBOLS):
    return compute_cross_section(features, symbols, sids, STEP, config, "u")


def _engine(features: pd.DataFrame, config: CrossSectionConfig = CFG, resume_at: int | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    engine = CrossSectionEngine(config, SIDS, SYMBOLS, int(STEP.value))
    cols = config.input_columns()
    ns = pd.DatetimeIndex(features["event_timestamp"]).as_unit("ns").asi8
    coins, universe = [], []
    for i, (ts, group) in enumerate(features.assign(ns=ns).groupby("ns", sort=True)):
        if i == resume_at:  # persist as JSON and resume from the state
            engine = CrossSectionEngine.from_state(json.loads(json.dumps(engine.state_dict())))
        out = engine.update(int(ts), {r["series_id"]: {c: r[c] for c in cols}
                                      for r in group.to_dict("records")})
        coins += [{"series_id": k, "ns": int(ts), **v} for k, v in out.coins.items()]
        universe.append({"ns": int(ts), **out.universe})
    return pd.DataFrame(coins), pd.DataFrame(universe)


def _keyed(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if "ns" not in frame.columns:
        frame = frame.assign(ns=pd.DatetimeIndex(frame["event_timestamp"]).as_unit("ns").asi8)
    return frame.set_index(keys).sort_index()


def test_batch_equals_incremental_on_real_coins_with_gaps(five_coins):
    """Every coin and universe column, NaN pattern and values (1e-12), including across a
    JSON state round trip of the engine in the middle of the slice."""
    coin_b, uni_b = _batch(five_coins)
    coin_i, uni_i = _engine(five_coins, resume_at=600)
    assert len(coin_b) == len(five_coins) == len(coin_i)  # one row per coin bar
    b, i = _keyed(coin_b, ["series_id", "ns"]), _keyed(coin_i, ["series_id", "ns"])
    for name in coin_feature_names(CFG):
        np.testing.assert_allclose(i[name].to_numpy(), b[name].to_numpy(), rtol=1e-10,
                                   atol=1e-12, equal_nan=True, err_msg=name)
        assert b[name].notna().mean() > 0.8, name  # defined once warm
    ub, ui = _keyed(uni_b, ["ns"]), _keyed(uni_i, ["ns"])
    assert len(ub) == len(ui)
    for name in universe_feature_names(CFG):
        np.testing.assert_allclose(ui[name].to_numpy(), ub[name].to_numpy(), rtol=1e-10,
                                   atol=1e-12, equal_nan=True, err_msg=name)
    # the real slice has bars where a coin is missing: those bars count fewer coins
    assert (ub["mkt_coins"] < len(SYMBOLS)).any()


def test_point_in_time_future_and_later_listed_coin(five_coins):
    """Changing every coin's bars after a cut, or adding a sixth coin listed after it, changes
    nothing at or before the cut."""
    cut = pd.DatetimeIndex(five_coins["event_timestamp"]).sort_values()[3000]
    base_coin, base_uni = _batch(five_coins)
    future = five_coins["event_timestamp"] > cut
    changed = five_coins.copy()
    numeric = [c for c in CFG.input_columns()]
    rng = np.random.default_rng(0)
    changed.loc[future, numeric] = rng.normal(size=(int(future.sum()), len(numeric)))
    late = five_coins[(five_coins["series_id"] == SIDS[0]) & future].copy()
    late["series_id"] = "bitfinex:NEW/USD:30m"
    late[numeric] = rng.normal(size=(len(late), len(numeric)))
    sids, symbols = [*SIDS, "bitfinex:NEW/USD:30m"], [*SYMBOLS, "NEW/USD"]
    for frame, ids, syms in ((changed, SIDS, SYMBOLS),
                             (pd.concat([five_coins, late]), sids, symbols)):
        coin, uni = _batch(frame, sids=ids, symbols=syms)
        before = coin[(coin["event_timestamp"] <= cut) & coin["series_id"].isin(SIDS)]
        expected = base_coin[base_coin["event_timestamp"] <= cut]
        pd.testing.assert_frame_equal(before.reset_index(drop=True),
                                      expected.reset_index(drop=True))
        pd.testing.assert_frame_equal(
            uni[uni["event_timestamp"] <= cut].reset_index(drop=True),
            base_uni[base_uni["event_timestamp"] <= cut].reset_index(drop=True))
        assert not coin[coin["event_timestamp"] > cut].equals(
            base_coin[base_coin["event_timestamp"] > cut])  # the change did land later


def _frame(values: dict[str, list[float]], times: int = 1, **columns: list[float]
           ) -> pd.DataFrame:
    """Feature rows for coins A, B, C (and more) over ``times`` bars: ``values[sid]`` per bar."""
    rows = []
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    for sid, series in values.items():
        for t, v in enumerate(series):
            if v is None:
                continue  # no bar: the coin is absent
            row = {"series_id": sid, "event_timestamp": t0 + t * STEP}
            for c in CrossSectionConfig(enabled=True).input_columns():
                row[c] = v
            for c, per_coin in columns.items():
                row[c] = per_coin[list(values).index(sid)]
            rows.append(row)
    return pd.DataFrame(rows)


def test_ranks_zscores_and_relative_returns_by_hand():
    """Three coins: values 1, 2, 2 (a tie) -> ranks 0, 0.75, 0.75; z-scores by the population
    std; relative returns against the equal-weight mean; breadth; a missing coin."""
    cfg = CrossSectionConfig(enabled=True, min_coins=2)
    values = np.array([[1.0, 2.0, 2.0, np.nan]])
    assert average_rank(values)[0, :3].tolist() == [0.0, 0.75, 0.75]
    assert math.isnan(average_rank(values)[0, 3])
    frame = _frame({"A": [0.01, 0.01], "B": [0.02, None], "C": [-0.03, 0.05]})
    coin, uni = compute_cross_section(frame, ["A", "B", "C"], ["A", "B", "C"], STEP, cfg, "u")
    first = coin[coin["event_timestamp"] == coin["event_timestamp"].min()].set_index("series_id")
    mean = (0.01 + 0.02 - 0.03) / 3
    std = math.sqrt(((0.01 - mean) ** 2 + (0.02 - mean) ** 2 + (-0.03 - mean) ** 2) / 3)
    assert first["xs_rank_logret_4"].tolist() == [0.5, 1.0, 0.0]
    np.testing.assert_allclose(first["xs_z_logret_4"], [(v - mean) / std
                                                        for v in (0.01, 0.02, -0.03)])
    np.testing.assert_allclose(first["xs_rel_16"], [v - mean for v in (0.01, 0.02, -0.03)])
    assert uni["mkt_breadth"].iloc[0] == pytest.approx(2 / 3)
    assert uni["mkt_coins"].tolist() == [3.0, 2.0]
    second = coin[coin["event_timestamp"] == coin["event_timestamp"].max()]
    assert set(second["series_id"]) == {"A", "C"}  # B has no bar there: no row, not filled
    assert second.set_index("series_id")["xs_rank_logret_4"].to_dict() == {"A": 0.0, "C": 1.0}
    strict = CrossSectionConfig(enabled=True, min_coins=3)
    coin3, _ = compute_cross_section(frame, ["A", "B", "C"], ["A", "B", "C"], STEP, strict, "u")
    assert coin3[coin3["event_timestamp"] == coin3["event_timestamp"].max()][
        "xs_rank_logret_4"].isna().all()  # two coins are below min_coins: NaN, not a rank


def test_beta_against_a_reference_coin():
    """ETH's return is exactly 2 x BTC's: beta 2, correlation 1, no residual; a coin with its
    own noise has beta near 0 against BTC and residual vol = its own vol."""
    rng = np.random.default_rng(1)
    n = 200
    btc = rng.normal(0, 0.01, n)
    noise = rng.normal(0, 0.02, n)
    cfg = CrossSectionConfig(enabled=True, reference="BTC", min_coins=2, beta_window=100,
                             beta_min_periods=50)
    frame = _frame({"BTC": list(btc), "ETH": list(2 * btc), "X": list(noise)})
    coin, _ = compute_cross_section(frame, ["BTC", "ETH", "X"], ["BTC", "ETH", "X"], STEP, cfg,
                                    "u")
    last = coin[coin["event_timestamp"] == coin["event_timestamp"].max()].set_index("series_id")
    assert last.loc["BTC", "xs_beta"] == pytest.approx(1.0)
    assert last.loc["ETH", "xs_beta"] == pytest.approx(2.0)
    assert last.loc["ETH", "xs_corr"] == pytest.approx(1.0)
    assert last.loc["ETH", "xs_resid_vol"] == pytest.approx(0.0, abs=1e-12)
    assert abs(last.loc["X", "xs_beta"]) < 0.5
    assert last.loc["X", "xs_resid_vol"] == pytest.approx(np.std(noise[-100:], ddof=1), rel=0.05)
    early = coin[coin["event_timestamp"] == coin["event_timestamp"].min() + 10 * STEP]
    assert early["xs_beta"].isna().all()  # fewer than beta_min_periods pairs yet


def test_relative_labels_are_demeaned_across_coins():
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    labels = pd.DataFrame({
        "series_id": ["A", "B", "C", "A", "B"],
        "event_timestamp": [t0, t0, t0, t0 + STEP, t0 + STEP],
        "fwd_logret_4": [0.03, 0.0, -0.03, 0.01, np.nan],
    })
    out = cross_section_labels(labels, ["A", "B", "C"], [4], min_coins=2)
    assert out["fwd_rel_4"].iloc[:3].tolist() == pytest.approx([0.03, 0.0, -0.03])
    assert out["label_rel_up_4"].iloc[:3].tolist()[0::2] == [1.0, 0.0]
    assert math.isnan(out["label_rel_up_4"].iloc[1])  # exactly the basket: no direction
    assert out["fwd_rel_4"].iloc[3:].isna().all()  # one coin with a label: below min_coins


def test_engine_refuses_unknown_series_and_off_grid_bars():
    engine = CrossSectionEngine(CFG, SIDS, SYMBOLS, int(STEP.value))
    t = int(pd.Timestamp("2024-01-01", tz="UTC").value)
    engine.update(t, {SIDS[0]: {"logret_1": 0.0}})
    with pytest.raises(ValueError, match="not in the universe"):
        engine.update(t + int(STEP.value), {"bitfinex:DOGE/USD:30m": {}})
    with pytest.raises(ValueError, match="grid"):
        engine.update(t + int(STEP.value) // 2, {})
    with pytest.raises(ValueError, match="grid"):
        engine.update(t, {})
