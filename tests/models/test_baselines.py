"""Baselines: exact training frequencies, the shared protocol, and a real walk-forward run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.evaluation.metrics import metrics_table
from candlecast.evaluation.splits import WalkForwardConfig, walk_forward_splits
from candlecast.models.base import DirectionModel, NotFittedError
from candlecast.models.baselines import (
    BaselineConfig,
    BaseRateModel,
    MomentumModel,
    PersistenceModel,
    make_baselines,
)

X = pd.DataFrame(
    {
        "logret_1": [0.01, -0.02, 0.03, 0.0, np.nan, 0.02, -0.01, 0.01],
        "ema_fast": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "ema_slow": [2.0, 1.0, 1.0, 5.0, 5.0, 5.0, 8.0, 7.0],
    }
)
Y = pd.Series([1, 0, 1, 1, 0, 1, 0, 0])


def test_base_rate_is_the_smoothed_training_frequency():
    assert BaseRateModel(prior_count=0).fit(X, Y).predict_proba_up(X[:3]).tolist() == [0.5] * 3
    # 4 ups of 8, one pseudo-count split evenly -> (4 + 0.5) / 9
    model = BaseRateModel(prior_count=1).fit(X.iloc[:4], Y.iloc[:4])
    np.testing.assert_allclose(model.predict_proba_up(X), (3 + 0.5) / 5)


def test_persistence_counts_up_rates_per_sign_of_the_last_return():
    model = PersistenceModel("logret_1", prior_count=0).fit(X, Y)
    # up returns at rows 0, 2, 5, 7 -> labels 1, 1, 1, 0; down at rows 1, 6 -> 0, 0;
    # flat/NaN at rows 3, 4 -> 1, 0
    assert model.p_up_ == {1: 0.75, -1: 0.0, 0: 0.5}
    probe = pd.DataFrame({"logret_1": [0.5, -0.5, 0.0, np.nan]})
    assert model.predict_proba_up(probe).tolist() == [0.75, 0.0, 0.5, 0.5]
    smoothed = PersistenceModel("logret_1", prior_count=2).fit(X, Y)
    base = (4 + 1) / (8 + 2)
    assert smoothed.p_up_[-1] == pytest.approx((0 + 2 * base) / (2 + 2))
    assert smoothed.describe()["n_up"] == 4


def test_a_state_unseen_in_training_predicts_the_base_rate():
    only_up = pd.DataFrame({"logret_1": [0.1, 0.2, 0.3]})
    model = PersistenceModel(prior_count=0).fit(only_up, pd.Series([1, 0, 1]))
    assert model.predict_proba_up(pd.DataFrame({"logret_1": [-1.0]})) == pytest.approx(2 / 3)


def test_momentum_from_one_column_or_a_moving_average_crossover():
    crossover = MomentumModel(fast="ema_fast", slow="ema_slow", prior_count=0).fit(X, Y)
    # fast - slow: -1, 1, 2, -1, 0, 1, -1, 1 -> up rows 1,2,5,7: labels 0,1,1,0;
    # down rows 0,3,6: labels 1,1,0; flat row 4: label 0
    assert crossover.p_up_ == {1: 0.5, -1: pytest.approx(2 / 3), 0: 0.0}
    single = MomentumModel("logret_1", prior_count=0).fit(X, Y)
    assert single.p_up_ == PersistenceModel("logret_1", prior_count=0).fit(X, Y).p_up_
    with pytest.raises(ValueError, match="both fast and slow"):
        MomentumModel(fast="ema_fast")


def test_protocol_names_and_errors():
    models = make_baselines(BaselineConfig(momentum_feature="logret_1"))
    assert [m.name for m in models] == ["base_rate", "persistence", "momentum"]
    assert all(isinstance(m, DirectionModel) and m.family == "baseline" for m in models)
    with pytest.raises(NotFittedError):
        PersistenceModel().predict_proba_up(X)
    with pytest.raises(ValueError, match=r"needs feature columns \['ema_dist_20'\]"):
        MomentumModel().fit(X, Y)
    with pytest.raises(ValueError, match="binary labels"):
        BaseRateModel().fit(X, Y.replace(0, 2))
    with pytest.raises(ValueError, match="8 rows but labels have 7"):
        BaseRateModel().fit(X, Y.iloc[:7])
    with pytest.raises(ValueError, match="given together"):
        BaselineConfig(momentum_fast="a")


def test_baselines_walk_forward_on_real_candles(btc_30m):
    close = btc_30m["close"]
    logret = np.log(close).diff()
    frame = pd.DataFrame(
        {
            "timestamp": btc_30m["timestamp"],
            "logret_1": logret,
            "ema_dist_20": np.log(close / close.ewm(span=20, adjust=False).mean()),
            "ret": logret.shift(-1),
        }
    ).iloc[1:-1]
    frame["y"] = (frame["ret"] > 0).astype(int)
    folds = walk_forward_splits(
        frame["timestamp"], WalkForwardConfig(train_size=10_000, test_size=5_000, horizon=1)
    )
    rows = []
    for fold in folds:
        train, test = frame.iloc[fold.train], frame.iloc[fold.test]
        for model in make_baselines():
            model.fit(train, train["y"])
            rows.append(
                test[["timestamp", "y", "ret"]].assign(
                    model=model.name, fold=fold.index, prob_up=model.predict_proba_up(test)
                )
            )
    table = metrics_table(pd.concat(rows), ("model",)).set_index("model")
    assert len(folds) == 5 and (table["n"] == 25_000).all()
    # baselines are honest coin flips on 30m BTC: log loss close to ln 2, never wildly off
    assert (table["log_loss"].between(0.68, 0.71)).all()
    # a constant has no ranking skill within a fold (pooled, the per-fold constants differ)
    per_fold = metrics_table(pd.concat(rows), ("model", "fold"))
    assert (per_fold.loc[per_fold.model == "base_rate", "auc"] == 0.5).all()
    assert table.loc["persistence", "exposure"] > 0.9
