"""Chronos direction model: quantile maths, contexts without look-ahead, offline loading,
zero-shot and fine-tuned modes, determinism, and that training learns real structure."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402
from statistics import NormalDist  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from candlecast.models.base import DirectionModel, NotFittedError, ReturnQuantileModel  # noqa: E402
from candlecast.models.chronos_config import ChronosConfig, check_checkpoint  # noqa: E402
from candlecast.models.chronos_model import ChronosDirectionModel  # noqa: E402
from candlecast.models.quantiles import (  # noqa: E402
    interpolate_quantiles,
    prob_up_from_quantiles,
)

ASSET = Path(__file__).parent / "assets" / "tiny-chronos2"
TINY = {
    "d_model": 32,
    "d_kv": 16,
    "d_ff": 64,
    "num_layers": 1,
    "num_heads": 2,
    "context_length": 32,
    "patch_size": 4,
    "min_past": 8,
    "batch_size": 64,
}
KEY_A, KEY_B = "synth:AAA/USD:1h", "synth:BBB/USD:1h"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: HF offline mode, and any non-loopback connect fails the test."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and host not in ("127.0.0.1", "::1", "localhost")
            and (self.family in (socket.AF_INET, socket.AF_INET6))
        ):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ar1_frame(n: int, phi: float, seed: int, key: str = KEY_A, drift: float = 0.0) -> pd.DataFrame:
    """One series of AR(1) log returns on an hourly grid, with its next-return label."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, n)
    returns = np.zeros(n)
    for i in range(1, n):
        returns[i] = phi * returns[i - 1] + noise[i]
    returns = returns + drift
    return pd.DataFrame(
        {
            "series_id": key,
            "event_timestamp": pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
            "logret_1": returns,
            "next_ret": np.r_[returns[1:], np.nan],
        }
    )


def labels(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        (frame["next_ret"].fillna(0.0).to_numpy() > 0).astype(float), index=frame.index
    )


@pytest.fixture(scope="module")
def mean_reverting():
    """Two AR(-0.6) series: train / validation / test parts in time, and a model fitted on them
    with validation-based model selection (shared by several tests to keep the module fast)."""
    frame = pd.concat(
        [ar1_frame(1600, -0.6, 1, KEY_A), ar1_frame(1600, -0.6, 2, KEY_B)], ignore_index=True
    )
    step = frame.groupby("series_id").cumcount()
    train, val, test = (
        frame[step < 1000],
        frame[(step >= 1000) & (step < 1200)],
        frame[step >= 1200],
    )
    model = ChronosDirectionModel(ChronosConfig(**TINY, num_steps=120, eval_every_steps=60))
    model.fit(train, labels(train), X_val=val, y_val=labels(val))
    return model, train, val, test


# ---------------------------------------------------------------- quantile maths


def test_prob_up_matches_hand_computed_interpolation():
    levels = [0.1, 0.5, 0.9]
    values = np.array(
        [
            [-0.02, 0.01, 0.03],  # zero between q10 and q50
            [-0.03, -0.01, 0.01],  # zero between q50 and q90
            [0.01, 0.02, 0.03],  # every quantile above zero
            [-0.03, -0.02, -0.01],  # every quantile below zero
            [0.03, -0.02, 0.01],  # crossing quantiles: read as sorted (-0.02, 0.01, 0.03)
            [-0.01, 0.0, 0.0],  # zero on tied knots q50 = q90
        ]
    )
    expected_cdf = [
        0.1 + 0.4 * (0.02 / 0.03),
        0.5 + 0.4 * (0.01 / 0.02),
        0.1,
        0.9,
        0.1 + 0.4 * (0.02 / 0.03),
        (0.5 + 0.9) / 2,
    ]
    np.testing.assert_allclose(prob_up_from_quantiles(levels, values), 1 - np.array(expected_cdf))


def test_prob_up_recovers_a_known_normal_distribution():
    levels = np.round(np.arange(0.01, 1.0, 0.01), 2)
    for mu, sigma in [(0.002, 0.01), (-0.005, 0.01), (0.0, 0.02), (0.01, 0.015)]:
        dist = NormalDist(mu, sigma)
        values = np.array([[dist.inv_cdf(q) for q in levels]])
        p_up = prob_up_from_quantiles(levels, values)[0]
        assert p_up == pytest.approx(1 - dist.cdf(0.0), abs=2e-3)


def test_interpolate_quantiles_between_and_outside_knots():
    values = np.array([[-0.02, 0.01, 0.03]])
    out = interpolate_quantiles([0.1, 0.5, 0.9], values, [0.05, 0.3, 0.5, 0.8, 0.95])
    np.testing.assert_allclose(out[0], [-0.02, -0.005, 0.01, 0.025, 0.03])


def test_quantile_maths_rejects_nan_and_bad_shapes():
    with pytest.raises(ValueError, match="NaN"):
        prob_up_from_quantiles([0.1, 0.5, 0.9], np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        prob_up_from_quantiles([0.1, 0.5, 0.9], np.zeros((2, 4)))


# ---------------------------------------------------------------- contexts, no look-ahead


def test_contexts_hold_each_rows_own_past_on_the_time_grid():
    a = ar1_frame(12, 0.0, 3, KEY_A).drop(index=[5])  # a missing candle in series A
    b = ar1_frame(12, 0.0, 4, KEY_B)
    frame = pd.concat([b, a], ignore_index=True).sample(frac=1.0, random_state=0)  # any order
    model = ChronosDirectionModel(ChronosConfig(**{**TINY, "context_length": 8}))
    contexts = model.contexts(frame)
    assert contexts.shape == (len(frame), 8)
    for row, (_, rec) in enumerate(frame.iterrows()):
        series = frame[frame.series_id == rec.series_id].set_index("event_timestamp")["logret_1"]
        grid = pd.date_range(end=rec.event_timestamp, periods=8, freq="1h")
        expected = series.reindex(grid).to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(contexts[row], expected)


def test_horizon_two_context_is_the_trailing_two_step_return():
    frame = ar1_frame(20, 0.0, 5)
    model = ChronosDirectionModel(ChronosConfig(**{**TINY, "context_length": 8}, horizon=2))
    contexts = model.contexts(frame)
    two_step = frame["logret_1"].rolling(2).sum().to_numpy()
    np.testing.assert_allclose(contexts[15], two_step[8:16], rtol=1e-6)
    assert np.isnan(contexts[3][:-3]).all() and not np.isnan(contexts[3][-3:]).any()


def test_prediction_at_t_ignores_every_row_after_t(mean_reverting):
    model, _, _, test = mean_reverting
    cut = test.index[len(test) // 4]
    later = test.index > cut
    before = model.predict_forecast(test)
    changed = test.copy()
    changed.loc[later, "logret_1"] = np.random.default_rng(9).normal(0.0, 0.05, later.sum())
    after = model.predict_forecast(changed)
    truncated = model.predict_forecast(test[~later])
    pd.testing.assert_frame_equal(after[~later], before[~later])
    pd.testing.assert_frame_equal(truncated, before[~later])
    assert not np.allclose(after.loc[later, "p_up"], before.loc[later, "p_up"])


# ---------------------------------------------------------------- learning, determinism


def test_trained_model_learns_mean_reversion(mean_reverting):
    model, train, _, test = mean_reverting
    forecast = model.predict_forecast(test)
    usable = forecast["has_context"].to_numpy()
    realised = test["next_ret"].to_numpy()
    known = usable & ~np.isnan(realised)
    p_up = forecast["p_up"].to_numpy()
    hit_rate = np.mean((p_up[known] > 0.5) == (realised[known] > 0))
    assert hit_rate > 0.65  # AR(-0.6): the best possible is about 0.70, a coin flip 0.50
    assert np.corrcoef(forecast["median"].to_numpy()[known], realised[known])[0, 1] > 0.4
    # control: the same model barely trained does not have this skill
    control = ChronosDirectionModel(ChronosConfig(**TINY, num_steps=2)).fit(train, labels(train))
    control_p = control.predict_proba_up(test)
    assert np.mean((control_p[known] > 0.5) == (realised[known] > 0)) < 0.6


def test_outputs_are_probabilities_spreads_and_named_quantiles(mean_reverting):
    model, _, _, test = mean_reverting
    assert isinstance(model, DirectionModel) and isinstance(model, ReturnQuantileModel)
    assert model.family == "foundation" and model.name == "chronos"
    p_up = model.predict_proba_up(test)
    assert p_up.shape == (len(test),) and ((p_up >= 0) & (p_up <= 1)).all()
    forecast = model.predict_forecast(test)
    np.testing.assert_allclose(forecast["p_up"], p_up)
    quantiles = model.predict_return_quantiles(test, [0.1, 0.5, 0.9])
    assert list(quantiles.columns) == ["q0.1", "q0.5", "q0.9"]
    ok = forecast["has_context"].to_numpy()
    np.testing.assert_allclose(forecast["spread"][ok], (quantiles["q0.9"] - quantiles["q0.1"])[ok])
    assert (forecast["spread"][ok] > 0).all()
    # the first min_past - 1 rows of each series lack history: neutral and flagged, not invented
    first = test.groupby("series_id").head(TINY["min_past"] - 1).index
    assert not forecast.loc[first, "has_context"].any()
    assert (forecast.loc[first, "p_up"] == 0.5).all() and quantiles.loc[first].isna().all().all()
    # live inference: only each series' latest row is forecast, from the same history
    latest = model.predict_latest(test)
    assert list(latest.index) == list(test.groupby("series_id").tail(1).index)
    pd.testing.assert_frame_equal(latest, forecast.loc[latest.index], rtol=1e-5)


def test_same_seed_same_predictions_other_seed_differs():
    frame = ar1_frame(400, -0.5, 6)
    fit = lambda seed: ChronosDirectionModel(  # noqa: E731
        ChronosConfig(**TINY, num_steps=20, seed=seed)
    ).fit(frame, labels(frame))
    first, again, other = fit(0), fit(0), fit(1)
    np.testing.assert_array_equal(first.predict_proba_up(frame), again.predict_proba_up(frame))
    assert not np.array_equal(first.predict_proba_up(frame), other.predict_proba_up(frame))


def test_model_trained_on_a_strong_drift_predicts_up():
    up = ar1_frame(600, 0.0, 7, drift=0.004)  # noise sd 0.01: P(up) = Phi(0.4) = 0.66
    train, test = up.iloc[:450], up.iloc[450:]
    trained = ChronosDirectionModel(ChronosConfig(**TINY, num_steps=60)).fit(train, labels(train))
    control = ChronosDirectionModel(ChronosConfig(**TINY, num_steps=2)).fit(train, labels(train))
    p_up = trained.predict_proba_up(test)[TINY["min_past"] :]
    assert p_up.mean() > 0.5
    assert p_up.mean() > control.predict_proba_up(test)[TINY["min_past"] :].mean() + 0.05
    down = ar1_frame(200, 0.0, 8, drift=-0.004)
    assert trained.predict_proba_up(down)[TINY["min_past"] :].mean() < 0.5


# ---------------------------------------------------------------- checkpoints, offline


def test_zero_shot_from_committed_checkpoint_uses_its_weights():
    model = ChronosDirectionModel(ChronosConfig(checkpoint=str(ASSET), finetune=False, min_past=8))
    assert model.source.kind == "local"
    with pytest.raises(NotFittedError):
        model.predict_proba_up(ar1_frame(50, -0.6, 10))
    test = ar1_frame(800, -0.6, 11)
    model.fit(test.iloc[:10], labels(test.iloc[:10]))  # zero-shot: loads, does not train
    assert model.context_length == 32  # capped by the checkpoint's own context length
    p_up = model.predict_proba_up(test)
    realised = test["next_ret"].to_numpy()
    known = np.arange(len(test)) >= 8
    known[-1] = False
    assert np.mean((p_up[known] > 0.5) == (realised[known] > 0)) > 0.62  # pretrained skill


def test_fine_tuning_a_local_checkpoint_changes_its_weights(tmp_path):
    frame = ar1_frame(400, 0.3, 12)
    zero_shot = ChronosDirectionModel(ChronosConfig(checkpoint=str(ASSET), finetune=False))
    tuned = ChronosDirectionModel(
        ChronosConfig(
            checkpoint=str(ASSET),
            num_steps=10,
            learning_rate=1e-3,
            min_past=8,
            batch_size=16,
            output_dir=tmp_path / "ft",
        )
    )
    zero_shot.fit(frame, labels(frame))
    tuned.fit(frame, labels(frame))
    assert (tmp_path / "ft" / "finetuned-ckpt" / "config.json").is_file()
    a, b = zero_shot.predict_proba_up(frame), tuned.predict_proba_up(frame)
    assert ((b >= 0) & (b <= 1)).all() and not np.allclose(a, b)


def test_save_then_load_from_local_path_predicts_identically(mean_reverting, tmp_path):
    model, _, _, test = mean_reverting
    model.save(tmp_path / "saved")
    loaded = ChronosDirectionModel.load(tmp_path / "saved")
    np.testing.assert_array_equal(loaded.predict_proba_up(test), model.predict_proba_up(test))
    # the plain Chronos checkpoint inside is loadable with from_pretrained as a zero-shot model
    reopened = ChronosDirectionModel(
        ChronosConfig(checkpoint=str(tmp_path / "saved" / "pipeline"), finetune=False, min_past=8)
    ).fit(test.iloc[:5], labels(test.iloc[:5]))
    np.testing.assert_array_equal(reopened.predict_proba_up(test), model.predict_proba_up(test))


def test_checkpoint_checks_fail_before_training_with_clear_messages(tmp_path):
    assert check_checkpoint(None).kind == "scratch"
    assert check_checkpoint("scratch").kind == "scratch"
    assert check_checkpoint(str(ASSET)).kind == "local"
    hub = check_checkpoint("amazon/chronos-bolt-small")
    assert hub.kind == "hub" and hub.location == "amazon/chronos-bolt-small"
    with pytest.raises(ValueError, match="does not exist"):
        check_checkpoint(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="does not exist"):
        ChronosDirectionModel(ChronosConfig(checkpoint="./models/missing-chronos"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        check_checkpoint(str(tmp_path / "empty"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a Chronos model"):
        check_checkpoint(str(tmp_path / "bert"))
    with pytest.raises(ValidationError, match="must be trained"):
        ChronosConfig(checkpoint=None, finetune=False)
    with pytest.raises(ValidationError, match="multiple of patch_size"):
        ChronosConfig(context_length=30, patch_size=8)


def test_uncached_hub_id_fails_offline_with_a_clear_message():
    model = ChronosDirectionModel(ChronosConfig(checkpoint="amazon/not-a-cached-chronos-model"))
    frame = ar1_frame(50, 0.0, 13)
    with pytest.raises(ValueError, match="could not load Chronos checkpoint"):
        model.fit(frame, labels(frame))


def test_bad_frames_fail_with_clear_messages():
    model = ChronosDirectionModel(ChronosConfig(**TINY))
    frame = ar1_frame(50, 0.0, 14)
    with pytest.raises(ValueError, match="series key column 'series_id'"):
        model.contexts(frame.drop(columns="series_id"))
    with pytest.raises(ValueError, match="logret_1"):
        model.contexts(frame.drop(columns="logret_1"))
    duplicated = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate timestamp"):
        model.contexts(duplicated)
    with pytest.raises(ValueError, match="too short"):
        model.fit(frame.iloc[:5], labels(frame.iloc[:5]))


# ---------------------------------------------------------------- real candles


def candle_returns(candles: pd.DataFrame) -> pd.DataFrame:
    """Series key, close time and one-step log return of a real candle table."""
    step = pd.Timedelta(candles["timeframe"].iloc[0].replace("m", "min"))
    frame = pd.DataFrame(
        {
            "series_id": candles["exchange"] + ":" + candles["symbol"] + ":" + candles["timeframe"],
            "event_timestamp": candles["timestamp"] + step,
            "logret_1": np.log(candles["close"]).diff(),
        }
    )
    frame["next_ret"] = frame["logret_1"].shift(-1)
    return frame


def test_missing_real_candles_are_missing_context_slots(btc_30m):
    frame = candle_returns(btc_30m)
    gap_at = int(np.flatnonzero(frame["event_timestamp"].diff() == pd.Timedelta("3h"))[0])
    contexts = ChronosDirectionModel(ChronosConfig(**{**TINY, "context_length": 16})).contexts(
        frame
    )
    row = contexts[gap_at]
    returns = frame["logret_1"].to_numpy(dtype=np.float32)
    assert row[-1] == returns[gap_at]
    assert np.isnan(row[-6:-1]).all()  # a 3h step on a 30m grid: five candles missing
    np.testing.assert_array_equal(row[:-6], returns[gap_at - 10 : gap_at])


def test_on_real_btc_the_forecast_is_humble_and_its_spread_tracks_volatility(btc_1h):
    frame = candle_returns(btc_1h)
    train, test = frame.iloc[-5000:-2000], frame.iloc[-2000:]
    model = ChronosDirectionModel(ChronosConfig(**TINY, num_steps=80)).fit(train, labels(train))
    forecast = model.predict_forecast(test)
    ok = forecast["has_context"] & test["next_ret"].notna()
    assert 0.4 < forecast.loc[ok, "p_up"].mean() < 0.6
    assert forecast.loc[ok, "p_up"].between(0.1, 0.9).all()
    # volatility clusters: a wider forecast should come before bigger absolute moves
    rank_corr = forecast.loc[ok, "spread"].corr(test.loc[ok, "next_ret"].abs(), method="spearman")
    assert rank_corr > 0.1


def test_traced_network_is_used_only_if_it_matches_eager_mode(monkeypatch):
    """``accelerate`` keeps eager mode when the trace disagrees on a probe context, and a new
    ``fit`` drops a trace (new weights)."""
    import torch

    from candlecast.models import chronos_pipeline

    test = ar1_frame(300, -0.6, 13)
    model = ChronosDirectionModel(ChronosConfig(checkpoint=str(ASSET), finetune=False, min_past=8))
    model.fit(test.iloc[:10], labels(test.iloc[:10]))
    expected = model.predict_proba_up(test)
    assert model.accelerate() and model._traced is not None
    context = model.latest_context(test["logret_1"].to_numpy(), None)
    _, eager = model.quantiles_of(context)
    real_trace = torch.jit.trace

    def off_by_a_little(module, example, **kwargs):  # noqa: ANN001, ANN003, ANN202
        traced = real_trace(module, example, **kwargs)
        return lambda *args: traced(*args) + 1e-3

    monkeypatch.setattr(chronos_pipeline.torch.jit, "trace", off_by_a_little)
    assert not model.accelerate() and model._traced is None
    monkeypatch.undo()
    _, again = model.quantiles_of(context)
    np.testing.assert_array_equal(again, eager)
    assert model.accelerate()
    model.fit(test.iloc[:10], labels(test.iloc[:10]))
    assert model._traced is None
    np.testing.assert_array_equal(model.predict_proba_up(test), expected)
