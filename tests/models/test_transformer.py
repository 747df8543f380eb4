"""Temporal-attention transformer: no look-ahead, reproducibility, train-only scaling, early
stopping with checkpoints, quiet training, and that it learns a lagged (temporal) signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from candlecast.models.base import DirectionModel, NotFittedError
from candlecast.models.transformer import TransformerConfig, TransformerDirectionModel

FEATURES = [f"f{i}" for i in range(6)]
SMALL = {
    "window": 8,
    "d_model": 16,
    "num_heads": 2,
    "dim_feedforward": 32,
    "batch_size": 64,
    "max_epochs": 12,
    "patience": 3,
    "learning_rate": 3e-3,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def lagged_signal_frame(
    n_per_series: int, seed: int, lag: int = 2
) -> tuple[pd.DataFrame, pd.Series]:
    """Two series of noise features; the label is the sign of ``f0`` ``lag`` candles earlier
    (plus noise), so only a model that looks back in time can predict it."""
    rng = np.random.default_rng(seed)
    parts = []
    for key in ("synth:AAA/USD:1h", "synth:BBB/USD:1h"):
        part = pd.DataFrame(rng.normal(size=(n_per_series, len(FEATURES))), columns=FEATURES)
        part["f1"] = part["f1"] * 50.0 + 1000.0  # a feature on a very different scale
        part.insert(0, "series_id", key)
        part.insert(
            1,
            "event_timestamp",
            pd.date_range("2024-01-01", periods=n_per_series, freq="1h", tz="UTC"),
        )
        signal = part["f0"].shift(lag).fillna(0.0) + 0.4 * rng.normal(size=n_per_series)
        part["label"] = (signal > 0).astype(float)
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    return frame.drop(columns="label"), frame["label"]


def split(frame: pd.DataFrame, y: pd.Series, first: int, second: int):
    step = frame.groupby("series_id").cumcount()
    masks = (step < first, (step >= first) & (step < second), step >= second)
    return [(frame[m], y[m]) for m in masks]


@pytest.fixture(scope="module")
def lagged():
    frame, y = lagged_signal_frame(700, seed=0)
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = split(frame, y, 450, 550)
    model = TransformerDirectionModel(TransformerConfig(**SMALL))
    model.fit(X_tr, y_tr, X_val=X_va, y_val=y_va)
    return model, (X_tr, y_tr), (X_va, y_va), (X_te, y_te)


def test_learns_a_lagged_signal_that_a_one_candle_window_cannot_see(lagged):
    model, (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = lagged
    p_up = model.predict_proba_up(X_te)
    assert p_up.shape == (len(X_te),) and ((p_up >= 0) & (p_up <= 1)).all()
    accuracy = np.mean((p_up > 0.5) == (y_te.to_numpy() > 0.5))
    assert accuracy > 0.75  # the label is sign(f0 two candles ago) + noise: about 0.9 is possible
    blind = TransformerDirectionModel(TransformerConfig(**{**SMALL, "window": 1}))
    blind.fit(X_tr, y_tr, X_val=X_va, y_val=y_va)
    blind_accuracy = np.mean((blind.predict_proba_up(X_te) > 0.5) == (y_te.to_numpy() > 0.5))
    assert blind_accuracy < 0.6


def test_prediction_at_t_ignores_every_row_after_t(lagged):
    model, _, _, (X_te, _) = lagged
    cut = X_te.index[len(X_te) // 3]
    later = X_te.index > cut
    before = model.predict_proba_up(X_te)
    changed = X_te.copy()
    changed.loc[later, FEATURES] = 100.0
    after = model.predict_proba_up(changed)
    truncated = model.predict_proba_up(X_te[~later])
    np.testing.assert_array_equal(after[~later], before[~later])
    np.testing.assert_array_equal(truncated, before[~later])
    assert not np.allclose(after[later], before[later])
    latest = model.predict_latest(X_te[~later])  # live: each series' latest row only
    last_rows = X_te[~later].groupby("series_id").tail(1).index
    assert list(latest.index) == list(last_rows)
    np.testing.assert_allclose(latest["p_up"], pd.Series(before, X_te.index)[last_rows], rtol=1e-5)


def test_two_fits_with_the_same_seed_predict_identically():
    frame, y = lagged_signal_frame(250, seed=1)
    config = TransformerConfig(**{**SMALL, "max_epochs": 2})
    first = TransformerDirectionModel(config).fit(frame, y)
    again = TransformerDirectionModel(config).fit(frame, y)
    other = TransformerDirectionModel(config.model_copy(update={"seed": 1})).fit(frame, y)
    np.testing.assert_array_equal(first.predict_proba_up(frame), again.predict_proba_up(frame))
    assert not np.array_equal(first.predict_proba_up(frame), other.predict_proba_up(frame))


def test_scaler_is_fitted_on_training_rows_only(lagged):
    model, (X_tr, _), _, _ = lagged
    np.testing.assert_allclose(model.mean_, X_tr[FEATURES].mean().to_numpy())
    np.testing.assert_allclose(model.scale_, X_tr[FEATURES].std(ddof=0).to_numpy())
    # without X_val the held-out tail of each series is excluded from the scaler too
    frame, y = lagged_signal_frame(100, seed=2)
    frame.loc[frame.groupby("series_id").cumcount() >= 80, "f1"] = 1e6
    frame.loc[3, "f2"] = -np.inf  # e.g. log of a zero volume: treated as missing, not as a value
    config = TransformerConfig(**{**SMALL, "max_epochs": 1}, val_fraction=0.2, purge=0)
    inner = TransformerDirectionModel(config).fit(frame, y)
    assert inner.mean_[FEATURES.index("f1")] < 2000.0
    assert np.isfinite(inner.mean_).all() and np.isfinite(inner.scale_).all()


def test_early_stopping_keeps_the_best_checkpoint_and_is_quiet(tmp_path, capfd):
    rng = np.random.default_rng(3)
    frame, _ = lagged_signal_frame(300, seed=3)
    noise = pd.Series((rng.random(len(frame)) > 0.5).astype(float))  # nothing to learn
    config = TransformerConfig(
        **{**SMALL, "max_epochs": 30, "learning_rate": 1e-2, "patience": 1},
        checkpoint_dir=tmp_path / "ckpt",
    )
    model = TransformerDirectionModel(config).fit(frame, noise)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert model.epochs_trained_ < 30
    assert (tmp_path / "ckpt" / "transformer-best.ckpt").is_file()
    best = torch.load(tmp_path / "ckpt" / "transformer-best.ckpt", weights_only=False)
    for name, tensor in best["state_dict"].items():
        torch.testing.assert_close(model.net_.state_dict()[name], tensor)


def test_save_and_load_round_trip(lagged, tmp_path):
    model, _, _, (X_te, _) = lagged
    assert isinstance(model, DirectionModel)
    assert model.family == "neural" and model.name == "transformer"
    path = model.save(tmp_path / "transformer.pt")
    loaded = TransformerDirectionModel.load(path)
    np.testing.assert_array_equal(loaded.predict_proba_up(X_te), model.predict_proba_up(X_te))
    assert loaded.feature_columns_ == tuple(FEATURES)


def test_bad_inputs_fail_with_clear_messages(lagged):
    model, _, _, (X_te, _) = lagged
    with pytest.raises(ValueError, match="f3"):
        model.predict_proba_up(X_te.drop(columns="f3"))
    with pytest.raises(ValueError, match="series key column"):
        model.predict_proba_up(X_te.drop(columns="series_id"))
    with pytest.raises(NotFittedError):
        TransformerDirectionModel().predict_proba_up(X_te)
    with pytest.raises(ValidationError, match="divisible"):
        TransformerConfig(d_model=30, num_heads=4)
    frame, y = lagged_signal_frame(10, seed=4)
    with pytest.raises(ValueError, match="too few"):
        TransformerDirectionModel(TransformerConfig(**SMALL)).fit(frame.iloc[:2], y.iloc[:2])


def test_on_real_btc_candles_it_trains_and_stays_near_the_base_rate(btc_1h):
    candles = btc_1h.iloc[-3000:].reset_index(drop=True)
    logret = np.log(candles["close"]).diff()
    frame = pd.DataFrame(
        {
            "series_id": "coinbase:BTC/USD:1h",
            "event_timestamp": candles["timestamp"] + pd.Timedelta("1h"),
            "logret_1": logret,
            "logret_4": np.log(candles["close"]).diff(4),
            "range": np.log(candles["high"] / candles["low"]),
            "log_volume": np.log1p(candles["volume"]),
        }
    )
    y = pd.Series((logret.shift(-1).fillna(0.0) > 0).astype(float))
    model = TransformerDirectionModel(TransformerConfig(**{**SMALL, "max_epochs": 3}))
    model.fit(frame.iloc[:2400], y.iloc[:2400])
    p_up = model.predict_proba_up(frame.iloc[2400:])
    assert model.feature_columns_ == ("logret_1", "logret_4", "range", "log_volume")
    # the label and forward-return columns are never picked up as features
    leaky = frame.assign(label_up_1=y, fwd_logret_1=logret.shift(-1))
    auto = TransformerDirectionModel(TransformerConfig(**{**SMALL, "max_epochs": 1}))
    assert auto.fit(leaky.iloc[:600], y.iloc[:600]).feature_columns_ == model.feature_columns_
    assert np.isfinite(p_up).all() and ((p_up > 0) & (p_up < 1)).all()
    assert abs(p_up.mean() - y.iloc[:2400].mean()) < 0.1
