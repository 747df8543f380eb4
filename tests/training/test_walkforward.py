"""The walk-forward runner on real candles: out-of-fold only, failures kept, context for
sequence models without look-ahead, and the same numbers on a rerun."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from zoo_frames import BAR, FEATURES, labelled, training_set

from candlecast.evaluation.metrics import metrics_table
from candlecast.evaluation.splits import WalkForwardConfig, walk_forward_splits
from candlecast.models.baselines import make_baselines
from candlecast.models.lightgbm_model import LightGBMDirectionModel, LightGBMModelConfig
from candlecast.training.walkforward import OOF_COLUMNS, DataSpec, run_walk_forward

SPEC = DataSpec(FEATURES, "label_up_1", "fwd_logret_1", bar=BAR)
HORIZON = 1


@pytest.fixture(scope="module")
def frames():
    history = training_set()
    data = labelled(history)
    config = WalkForwardConfig(
        scheme="expanding", train_size=900, test_size=400, horizon=HORIZON, embargo=12, max_folds=3
    )
    folds = walk_forward_splits(
        data["event_timestamp"], config, label_end=data["event_timestamp"] + HORIZON * BAR
    )
    return history, data, folds


class Spy:
    """Predicts the training up-rate; records what it was trained and asked on."""

    family = "baseline"

    def __init__(self, name="spy", fail_in=(), nan_in=(), fold=-1):
        self.name, self.fail_in, self.nan_in, self.fold = name, fail_in, nan_in, fold
        self.train_times = self.predict_times = None

    def fit(self, X, y, *, X_val=None, y_val=None):
        if self.fold in self.fail_in:
            raise RuntimeError(f"boom in fold {self.fold}")
        self.train_times = X["event_timestamp"]
        self.rate = float(np.mean(y))
        return self

    def predict_proba_up(self, X):
        self.predict_times = X["event_timestamp"]
        if self.fold in self.nan_in:
            return np.full(len(X), np.nan)
        return np.full(len(X), self.rate)


def test_every_prediction_is_out_of_fold_and_training_stops_before_the_purge(frames):
    _, data, folds = frames
    spies = {}

    def build(fold):
        spies[fold.index] = Spy(fold=fold.index)
        return [spies[fold.index]]

    result = run_walk_forward(build, data, folds, SPEC)
    oof = result.predictions
    assert list(oof.columns) == list(OOF_COLUMNS)
    assert not oof.duplicated(["model", "series", "timestamp"]).any()
    for fold in folds:
        rows = oof[oof["fold"] == fold.index]
        assert len(rows) == len(fold.test)
        assert rows["timestamp"].min() >= fold.test_start
        assert rows["timestamp"].max() <= fold.test_end
        # a training row's label ends HORIZON bars after it: before the test window starts
        assert spies[fold.index].train_times.max() + HORIZON * BAR < fold.test_start
        expected = data.iloc[fold.train]["label_up_1"].mean()
        assert np.allclose(rows["prob_up"], expected)
    assert result.failures.empty


def test_a_model_failing_in_one_fold_is_reported_not_dropped(frames):
    _, data, folds = frames

    def build(fold):
        return [
            Spy("raises", fail_in=(1,), fold=fold.index),
            Spy("nan", nan_in=(2,), fold=fold.index),
            Spy("fine", fold=fold.index),
        ]

    result = run_walk_forward(build, data, folds, SPEC)
    failures = result.failures.set_index("model")
    assert failures.loc["raises", "fold"] == 1
    assert "boom in fold 1" in failures.loc["raises", "error"]
    assert failures.loc["nan", "fold"] == 2 and "NaN" in failures.loc["nan", "error"]
    assert "fine" not in failures.index
    table = metrics_table(result.predictions, ("model", "fold"), failures=result.failures)
    status = table.set_index(["model", "fold"])["status"]
    assert status[("raises", 1)] == "failed" and status[("nan", 2)] == "failed"
    assert (status.drop([("raises", 1), ("nan", 2)]) == "ok").all()
    assert len(table) == 3 * len(folds)  # nobody silently disappears
    fold_table = result.fold_table()
    assert set(fold_table.loc[fold_table["status"] == "failed", "model"]) == {"raises", "nan"}


def test_sequence_models_get_past_context_but_nothing_after_the_test_window(frames):
    history, data, folds = frames
    context = 40
    spies = {}

    def build(fold):
        spies[fold.index] = Spy(fold=fold.index)
        return [spies[fold.index]]

    result = run_walk_forward(build, data, folds, SPEC, history=history, context_bars=context)
    for fold in folds:
        seen = spies[fold.index].predict_times
        assert seen.min() >= fold.test_start - context * BAR
        assert seen.min() < fold.test_start  # the first test rows have their past
        assert seen.max() <= fold.test_end
        assert len(result.predictions.query("fold == @fold.index")) == len(fold.test)


def test_same_data_and_seeds_give_the_same_predictions(frames):
    _, data, folds = frames
    config = LightGBMModelConfig(n_estimators=40, min_child_samples=40, seed=7)

    def build(fold):
        return [*make_baselines(), LightGBMDirectionModel(config)]

    first = run_walk_forward(build, data, folds, SPEC).predictions
    second = run_walk_forward(build, data, folds, SPEC).predictions
    pd.testing.assert_frame_equal(first, second)
    assert set(first["model"]) == {"base_rate", "persistence", "momentum", "lightgbm"}
    assert first.groupby("model")["prob_up"].std().loc["lightgbm"] > 0


def test_regimes_are_joined_on_series_and_time(frames):
    _, data, folds = frames
    test_rows = data.iloc[np.concatenate([f.test for f in folds])]
    regimes = pd.DataFrame({
        "series": test_rows["series_id"].to_numpy(),
        "timestamp": test_rows["event_timestamp"].to_numpy(),
        "regime": (np.arange(len(test_rows)) % 3),
    })
    result = run_walk_forward(lambda fold: [Spy(fold=fold.index)], data, folds, SPEC,
                              regimes=regimes)
    merged = result.predictions.merge(regimes, on=["series", "timestamp"], suffixes=("", "_in"))
    assert len(merged) == len(result.predictions)
    assert (merged["regime"] == merged["regime_in"]).all()


def test_configuration_errors_are_not_swallowed_as_fold_failures(frames):
    _, data, folds = frames

    def build(fold):
        raise ValueError("models.lightgbm: bad config")

    with pytest.raises(ValueError, match="bad config"):
        run_walk_forward(build, data, folds, SPEC)
    with pytest.raises(ValueError, match="missing values"):
        run_walk_forward(lambda f: [], training_set(), folds, SPEC)
