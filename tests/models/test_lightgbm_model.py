"""The LightGBM direction model: purged inner split, early stopping, refit, persistence."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from zoo_frames import FEATURES, labelled, training_set  # noqa: E402

from candlecast.models.base import DirectionModel, NotFittedError  # noqa: E402
from candlecast.models.lightgbm_model import (  # noqa: E402
    LightGBMDirectionModel,
    LightGBMModelConfig,
)

CONFIG = LightGBMModelConfig(n_estimators=80, early_stopping_rounds=15, min_child_samples=40)


@pytest.fixture(scope="module")
def real():
    data = labelled(training_set())
    return data[["series_id", "event_timestamp", *FEATURES]], data["label_up_1"]


def test_inner_split_is_purged_and_the_refit_keeps_the_early_stopped_size(real):
    X, y = real
    model = LightGBMDirectionModel(CONFIG.model_copy(update={"horizon": 4})).fit(X, y)
    assert isinstance(model, DirectionModel)
    inner, val = model.inner_split(X)
    times = X["event_timestamp"]
    assert times.iloc[inner].max() < times.iloc[val].min()
    # purge: 4 axis steps between the last inner-training time and the validation block
    axis = np.sort(times.unique())
    first_val = np.searchsorted(axis, times.iloc[val].min())
    gap = first_val - np.searchsorted(axis, times.iloc[inner].max())
    assert gap > 4
    assert model.n_inner_train_ == len(inner) and model.n_val_ == len(val)
    assert model.booster_.num_trees() == model.best_iteration_  # refit with the trees found
    assert model.features_ == FEATURES  # keys are not features


def test_without_refit_the_early_stopped_model_predicts(real):
    X, y = real
    model = LightGBMDirectionModel(CONFIG.model_copy(update={"refit_full": False})).fit(X, y)
    assert model.num_iteration_ == model.best_iteration_
    p = model.predict_proba_up(X.iloc[-300:])
    assert p.shape == (300,) and ((p > 0) & (p < 1)).all() and p.std() > 0


def test_save_load_round_trip_and_single_row(real, tmp_path):
    X, y = real
    model = LightGBMDirectionModel(CONFIG).fit(X, y)
    loaded = LightGBMDirectionModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(model.predict_proba_up(X), loaded.predict_proba_up(X))
    one = loaded.predict_proba_up(X.iloc[[-1]])
    assert one.shape == (1,) and one[0] == pytest.approx(model.predict_proba_up(X)[-1])
    assert loaded.feature_importance()["gain"].sum() > 0


def test_clear_errors(real):
    X, y = real
    with pytest.raises(NotFittedError):
        LightGBMDirectionModel().predict_proba_up(X)
    with pytest.raises(ValueError, match="rsi_fancy"):
        config = CONFIG.model_copy(update={"feature_columns": ("rsi_fancy",)})
        LightGBMDirectionModel(config).fit(X, y)
    with pytest.raises(ValueError, match="event_timestamp"):
        LightGBMDirectionModel(CONFIG).fit(X.drop(columns="event_timestamp"), y)
