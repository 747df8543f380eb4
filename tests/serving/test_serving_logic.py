"""Pure parts of the service: the policy's decision, risk suggestions, features from candles,
model output parsing, the per-series window, configuration loading."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from candlecast.backtest.config import CostConfig
from candlecast.features import FeatureConfig, compute_features, feature_names
from candlecast.policy import Forecast, Policy, PolicyConfig
from candlecast.risk import ExitConfig, RiskConfig, SizingConfig
from candlecast.serving.config import ServingConfig, load_serving_config
from candlecast.serving.model import ModelError, ModelOutput, parse_output
from candlecast.serving.online import OnlineRow, WindowCache
from candlecast.serving.signal import (
    action_of,
    features_from_candles,
    is_stale,
    policy_decision,
    price_from_features,
    risk_suggestion,
)

T0 = pd.Timestamp("2019-09-30T12:00:00Z")
STEP = pd.Timedelta(minutes=30)


POLICY = PolicyConfig(horizon=4, entry_margin=1.0, exit_margin=0.0, min_hold_bars=2,
                      vol_target=None, allow_short=True)


def _out(er: float | None, vol: float | None = 0.005, h: int = 4) -> ModelOutput:
    forecasts = None if er is None else {h: (0.55 if er > 0 else 0.45, er)}
    return ModelOutput(prob_up=0.5, forecasts=forecasts, volatility=vol)


def test_policy_decision_is_the_policys_on_the_models_forecast():
    policy = Policy(POLICY, CostConfig(), 17_520)
    rt = 24e-4  # taker round trip of the default costs
    d = policy_decision(policy, _out(1.5 * rt), 0.0, 0)
    assert d.target == 1.0 and d.reason == "enter_long"
    assert d == policy.decide(Forecast(1.5 * rt, 0.005, 0.55), 0.0, 0)  # the same object
    d = policy_decision(policy, _out(-1.5 * rt), 0.0, 0)
    assert d.target == -1.0
    # the caller's position matters: hysteresis and the minimum hold
    assert policy_decision(policy, _out(0.5 * rt), 1.0, 5).target == 1.0  # hold
    assert policy_decision(policy, _out(-0.1 * rt), 1.0, 1).reason == "min_hold"
    assert policy_decision(policy, _out(-0.1 * rt), 1.0, 2).reason == "exit"
    # a horizon the model did not answer: unknown forecast, keep and open nothing
    assert policy_decision(policy, _out(0.1, h=16), 0.0, 0).target == 0.0
    assert policy_decision(policy, _out(0.1, h=16), 0.4, 3).target == 0.4
    assert policy_decision(None, _out(0.1), 0.0, 0) is None  # no policy: flat
    assert action_of(0.3) == "long" and action_of(-0.2) == "short" and action_of(0.0) == "flat"


def test_staleness_boundaries():
    assert not is_stale(T0, T0 + 1.5 * STEP, STEP, 1.5)
    assert is_stale(T0, T0 + 1.5 * STEP + pd.Timedelta(microseconds=1), STEP, 1.5)
    assert not is_stale(T0, T0 - STEP, STEP, 1.5)  # clock skew up to one bar
    assert is_stale(T0, T0 - STEP - pd.Timedelta(seconds=1), STEP, 1.5)


def test_risk_suggestion_caps_the_target_and_places_the_atr_stop():
    price, atr = 8000.0, 40.0
    size, stop, take = risk_suggestion(0.6, price, atr, T0, "30m", "s", RiskConfig())
    assert size == pytest.approx(0.6)  # the policy's notional, under every cap
    assert stop == pytest.approx(price - 2 * atr) and take is None  # the default 2-ATR stop
    size, stop, _ = risk_suggestion(-0.5, price, 400.0, T0, "30m", "s", RiskConfig())
    assert size == pytest.approx(0.5) and stop == pytest.approx(price + 800)
    capped = RiskConfig(sizing=SizingConfig(max_position_fraction=0.25))
    assert risk_suggestion(0.9, price, atr, T0, "30m", "s", capped)[0] == pytest.approx(0.25)
    assert risk_suggestion(0.0, price, atr, T0, "30m", "s", RiskConfig()) == (0.0, None, None)
    # no ATR: the ATR stop cannot be placed, the engine rejects the entry
    assert risk_suggestion(0.6, price, math.nan, T0, "30m", "s", RiskConfig()) == (
        0.0, None, None)
    assert risk_suggestion(0.6, math.nan, atr, T0, "30m", "s", RiskConfig()) == (
        0.0, None, None)
    with_target = RiskConfig(exits=ExitConfig(stop_atr_multiple=1.0, take_profit_r=2.0,
                                              chandelier_atr_multiple=None))
    _, stop, take = risk_suggestion(0.5, 100.0, 2.0, T0, "1h", "s", with_target)
    assert (stop, take) == (pytest.approx(98.0), pytest.approx(104.0))


def test_incremental_features_from_candles_equal_batch(btc_30m):
    candles = btc_30m.iloc[-1000:].reset_index(drop=True)
    rows = features_from_candles(candles[["timestamp", "open", "high", "low", "close",
                                          "volume"]], "bitfinex:BTC/USD:30m", "30m",
                                 FeatureConfig())
    batch = compute_features(candles, FeatureConfig())
    names = [*feature_names(FeatureConfig()), "atr"]
    np.testing.assert_allclose(rows[names].to_numpy(), batch[names].to_numpy(),
                               rtol=1e-9, atol=1e-12, equal_nan=True)
    assert (rows["event_timestamp"] == candles["timestamp"] + STEP).all()
    assert (rows["series_id"] == "bitfinex:BTC/USD:30m").all()
    assert (rows["close"] == candles["close"]).all()


def test_price_is_recovered_from_atr_and_atr_pct(btc_30m):
    feats = compute_features(btc_30m.iloc[-3000:].reset_index(drop=True), FeatureConfig())
    closes = btc_30m["close"].iloc[-3000:].to_numpy()
    got = np.array([price_from_features({"atr": a, "atr_pct": p})
                    for a, p in zip(feats["atr"], feats["atr_pct"], strict=True)])
    ok = ~np.isnan(got)
    assert ok.sum() > 2900
    np.testing.assert_allclose(got[ok], closes[ok], rtol=1e-12)
    assert price_from_features({"close": 5.0, "atr": 1.0, "atr_pct": 0.1}) == 5.0
    assert math.isnan(price_from_features({"atr_pct": 0.1}))


def test_parse_output_variants():
    frame = pd.DataFrame({"prob_up": [0.2, 0.7], "confidence": [0.1, 0.4],
                          "disagreement": [0.0, 0.05], "q0.1": [-0.01, -0.02],
                          "q0.9": [0.01, 0.03], "prob_mean": [0.5, 0.6]})
    out = parse_output(frame)
    assert (out.prob_up, out.confidence, out.disagreement) == (0.7, 0.4, 0.05)
    assert out.quantiles == {"q0.1": -0.02, "q0.9": 0.03}
    assert parse_output(np.array([0.1, 0.8])).prob_up == 0.8
    assert parse_output(np.array([[0.9, 0.1], [0.35, 0.65]])).prob_up == 0.65
    assert parse_output(pd.Series([0.4])).prob_up == 0.4
    assert parse_output({"prob_up": [0.3]}).prob_up == 0.3
    assert parse_output(pd.DataFrame({"p": [0.55]})).prob_up == 0.55
    for bad, match in [(np.array([1.2]), "outside"), (np.array([np.nan]), "non-finite"),
                       (pd.DataFrame({"a": [0.1], "b": [0.2]}), "prob_up"),
                       (np.array([]), "no values")]:
        with pytest.raises(ModelError, match=match):
            parse_output(bad)


def _row(i: int, value: float) -> OnlineRow:
    return OnlineRow("s", T0 + i * STEP, {"x": value})


def test_window_cache_appends_trims_and_keeps_holes():
    cache = WindowCache(4, ["x"])
    cache.prime({"s": pd.concat([_row(i, float(i)).frame(["x"]) for i in range(6)],
                                ignore_index=True)})
    frame = cache.update(_row(6, 6.0), STEP)
    assert frame["x"].tolist() == [3.0, 4.0, 5.0, 6.0]
    frame = cache.update(_row(8, 8.0), STEP)  # candle 7 never read: a hole, not a shift
    assert frame["x"].tolist() == [5.0, 6.0, 8.0]
    assert frame["event_timestamp"].iloc[0] == T0 + 5 * STEP
    frame = cache.update(_row(8, 8.0), STEP)  # same row again: unchanged
    assert frame["x"].tolist() == [5.0, 6.0, 8.0]
    older = cache.update(_row(6, 6.0), STEP)  # an older online row: the view up to it
    assert older["x"].tolist() == [5.0, 6.0]
    assert cache.update(_row(9, 9.0), STEP)["x"].tolist() == [6.0, 8.0, 9.0]
    assert cache.update(OnlineRow("new", T0, {"x": 1.0}), STEP)["x"].tolist() == [1.0]


def test_window_cache_arrays_are_the_frames_values():
    frames, arrays = WindowCache(4, ["x"]), WindowCache(4, ["x"])
    history = {"s": pd.concat([_row(i, float(i)).frame(["x"]) for i in range(6)],
                              ignore_index=True)}
    frames.prime(history)
    arrays.prime(history)
    for i, value in [(6, 6.0), (8, 8.0), (8, 8.5), (6, 6.0), (9, 9.0), (20, 1.0)]:
        frame = frames.update(_row(i, value), STEP)
        ns, values = arrays.update_arrays(_row(i, value), STEP)
        assert ns.tolist() == frame["event_timestamp"].astype("int64").tolist()
        assert values[:, 0].tolist() == frame["x"].tolist()


def test_serving_config_file_and_environment(tmp_path):
    folder = tmp_path / "bento"
    folder.mkdir()
    (folder / "serving_config.json").write_text(json.dumps(
        {"project_root": "..", "model_uri": "model", "max_feature_age_bars": 3}))
    cfg = load_serving_config({}, default_dir=folder)
    assert cfg.root() == tmp_path.resolve()
    assert cfg.model_uri == str(folder / "model")
    assert cfg.max_feature_age_bars == 3
    assert cfg.resolved_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"
    assert cfg.resolved_model_uri("models:/x@champion") == "models:/x@champion"
    moved = load_serving_config({"CANDLECAST_ROOT": "/srv/project"}, default_dir=folder)
    assert moved.root().as_posix() == "/srv/project"
    assert load_serving_config({}, default_dir=tmp_path) == ServingConfig()
    with pytest.raises(ValueError, match="does not exist"):
        load_serving_config({"CANDLECAST_SERVING_CONFIG": str(tmp_path / "nope.json")})
    (folder / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_serving_config({"CANDLECAST_SERVING_CONFIG": str(folder / "bad.json")})
    (folder / "bad.json").write_text(json.dumps({"max_feature_age_bars": -1}))
    with pytest.raises(ValueError, match="max_feature_age_bars"):
        load_serving_config({"CANDLECAST_SERVING_CONFIG": str(folder / "bad.json")})


def test_compose_takes_shared_values_from_their_sections(tmp_path):
    from candlecast.serving.config import compose_serving_config

    features = FeatureConfig(rsi_window=10)
    risk = RiskConfig.plain()
    cfg = compose_serving_config(ServingConfig(max_feature_age_bars=2.0), features=features,
                                 feature_service="svc_v2", tracking_uri="sqlite:///x.db",
                                 risk=risk, project_root=tmp_path)
    assert (cfg.features, cfg.feature_service, cfg.risk) == (features, "svc_v2", risk)
    assert cfg.max_feature_age_bars == 2.0
    assert cfg.resolved_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'x.db'}"
