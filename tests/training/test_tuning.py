"""Optuna tuning of LightGBM inside a fold's training part: reproducible, stored in SQLite,
pruned, and blind to the test window."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from zoo_frames import BAR, FEATURES, labelled, training_set

from candlecast.evaluation.splits import WalkForwardConfig, walk_forward_splits
from candlecast.models.lightgbm_model import LightGBMModelConfig
from candlecast.models.lightgbm_tuning import TunedLightGBMModel, TuningConfig, tune_lightgbm
from candlecast.training.walkforward import DataSpec, run_fold

BASE = LightGBMModelConfig(n_estimators=60, early_stopping_rounds=15, seed=3)
QUICK = TuningConfig(n_trials=5, n_startup_trials=2, pruner_warmup_steps=10, seed=11,
                     max_train_rows=1500)


@pytest.fixture(scope="module")
def train_part():
    data = labelled(training_set())
    X = data[["series_id", "event_timestamp", *FEATURES]]
    y = data["label_up_1"]
    return X.iloc[:3000].reset_index(drop=True), y.iloc[:3000].reset_index(drop=True)


def test_the_same_seed_gives_the_same_study_and_a_rerun_replaces_it(train_part, tmp_path):
    X, y = train_part
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = tune_lightgbm(X, y, BASE, QUICK, storage=storage, study_name="fold0")
    second = tune_lightgbm(X, y, BASE, QUICK, storage=storage, study_name="fold0")
    columns = [c for c in first.trials.columns if c != "duration_s"]
    pd.testing.assert_frame_equal(first.trials[columns], second.trials[columns])
    assert first.best_params == second.best_params
    stored = optuna.load_study(study_name="fold0", storage=storage)
    assert len(stored.trials) == QUICK.n_trials  # replaced, not appended to
    assert stored.best_value == pytest.approx(first.best_value)
    assert QUICK.num_leaves[0] <= first.best_params["num_leaves"] <= QUICK.num_leaves[1]
    other = tune_lightgbm(X, y, BASE, QUICK.model_copy(update={"seed": 12}), study_name="x")
    assert other.trials["param.num_leaves"].tolist() != first.trials["param.num_leaves"].tolist()


def test_the_median_pruner_stops_trials_early(train_part):
    X, y = train_part
    config = QUICK.model_copy(update={"n_trials": 10, "pruner_warmup_steps": 0, "report_every": 5})
    result = tune_lightgbm(X, y, BASE.model_copy(update={"n_estimators": 150}), config)
    pruned = result.trials[result.trials["state"] == "PRUNED"]
    assert result.n_pruned == len(pruned) >= 1
    assert (pruned["last_step"] < 150).all()
    assert result.n_complete >= 1


def test_trials_only_see_the_fold_training_part():
    data = labelled(training_set())
    config = WalkForwardConfig(train_size=1200, test_size=500, horizon=1, max_folds=1)
    fold = walk_forward_splits(data["event_timestamp"], config,
                               label_end=data["event_timestamp"] + BAR)[0]
    model = TunedLightGBMModel(BASE, QUICK.model_copy(update={"n_trials": 3}))
    spec = DataSpec(FEATURES, "label_up_1", "fwd_logret_1", bar=BAR)
    outcomes, _ = run_fold([model], data, fold, spec)
    assert outcomes[0].status == "ok", outcomes[0].error
    result = model.result_
    # the latest row any trial was scored on is in the fold's training part
    assert pd.Timestamp(result.data_end) < fold.test_start
    assert result.extra["n_inner_train"] + result.extra["n_val"] <= len(fold.train)
    assert len(outcomes[0].artifacts["trials"]) == 3
    assert model.chosen_params()["num_leaves"] == result.best_params["num_leaves"]


def test_a_bad_search_space_fails_with_its_name():
    with pytest.raises(ValueError, match="num_leaves"):
        TuningConfig(num_leaves=(20, 5))
    with pytest.raises(ValueError, match="subsample"):
        TuningConfig(subsample=(0.5, 1.5))
