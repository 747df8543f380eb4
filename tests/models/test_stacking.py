"""Stacked ensemble: out-of-fold only, calibration that helps, disagreement, persistence."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest

from candlecast.evaluation.metrics import log_loss, metrics_table
from candlecast.evaluation.splits import WalkForwardConfig, walk_forward_splits
from candlecast.models.baselines import make_baselines
from candlecast.models.regime import GaussianRegimes, RegimeConfig, regime_features
from candlecast.models.stacking import (
    ENSEMBLE_OUTPUTS,
    Calibrator,
    EnsembleConfig,
    OOFPredictions,
    Stacker,
    confidence,
    disagreement,
    score_calibration_methods,
    simple_average,
    stack_walk_forward,
)

N = 9000
TIMES = pd.date_range("2024-01-01", periods=N, freq="30min", tz="UTC")


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _synthetic(seed: int = 0):
    """A true P(up) driven by a signal; 'sharp' sees it but is overconfident, 'noise' is noise."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=N)
    y = (rng.uniform(size=N) < _sigmoid(0.8 * signal)).astype(int)
    probs = pd.DataFrame(
        {
            "sharp": _sigmoid(3.0 * (signal + rng.normal(0, 0.3, N))),
            "noise": np.clip(0.5 + rng.normal(0, 0.15, N), 0.01, 0.99),
        },
        index=pd.RangeIndex(100, 100 + N),
    )
    return probs, y


@pytest.fixture(scope="module")
def oof():
    probs, y = _synthetic()
    folds = walk_forward_splits(TIMES, WalkForwardConfig(train_size=1500, test_size=1500))
    rows = np.concatenate([f.test for f in folds])
    return OOFPredictions.from_walk_forward(probs.iloc[rows], y[rows], TIMES[rows], folds)


def test_fit_accepts_only_out_of_fold_predictions(oof):
    probs, y = _synthetic()
    with pytest.raises(TypeError, match="out-of-fold"):
        Stacker().fit(probs)  # a bare frame could hold in-sample predictions
    folds = walk_forward_splits(TIMES, WalkForwardConfig(train_size=1500, test_size=1500))
    # tests cover [3000, 9000): a fifth window would leave 1500 < 1500 + 1 for training
    with pytest.raises(ValueError, match="3000 rows are not in any walk-forward test window"):
        OOFPredictions.from_walk_forward(probs, y, TIMES, folds)
    assert sorted(set(oof.fold)) == [0, 1, 2, 3]
    explicit = OOFPredictions.assume_out_of_fold(probs, y, np.zeros(N, dtype=int), TIMES)
    assert len(explicit.probs) == N
    with pytest.raises(ValueError, match=r"missing probabilities \{'noise': 1\}"):
        bad = probs.copy()
        bad.iloc[5, 1] = np.nan
        OOFPredictions.assume_out_of_fold(bad, y, np.zeros(N, dtype=int), TIMES)


def test_stacking_weights_the_informative_model_and_beats_the_average(oof):
    ensemble = Stacker().fit(oof)
    clipped = oof.probs.clip(1e-4, 1 - 1e-4)
    design = np.log(clipped / (1 - clipped)).to_numpy()
    np.testing.assert_allclose(  # numpy serving path == scikit-learn
        ensemble.predict(oof.probs, calibrated=False)["prob_up"],
        ensemble.meta_.lr.predict_proba(design)[:, 1],
        rtol=1e-9,
    )
    coef = ensemble.coefficients()
    assert coef["logit_sharp"] > 0.1 and abs(coef["logit_noise"]) < 0.1
    # the stack recovers the true slope: 0.8 / (3 * sqrt(1 + 0.3**2)) ~ 0.26
    assert coef["logit_sharp"] == pytest.approx(0.26, abs=0.04)
    scores = ensemble.inner_scores_
    assert set(scores.index) == {"none", "platt", "isotonic", "simple_average"}
    assert scores["chosen"].sum() == 1 and scores.loc[ensemble.calibration_, "chosen"]
    assert scores.loc[ensemble.calibration_, "log_loss"] < scores.loc["simple_average", "log_loss"]
    # out of sample on fresh data from the same process
    probs, y = _synthetic(seed=1)
    out = ensemble.predict(probs)
    assert list(out.columns) == list(ENSEMBLE_OUTPUTS) and out.index.equals(probs.index)
    assert log_loss(y, out["prob_up"]) < log_loss(y, simple_average(probs)) - 0.02
    assert log_loss(y, out["prob_up"]) < log_loss(y, probs["sharp"]) - 0.1


def test_outputs_by_hand():
    probs = pd.DataFrame({"a": [0.9, 0.5], "b": [0.7, 0.5], "c": [0.2, 0.5]})
    np.testing.assert_allclose(simple_average(probs), [0.6, 0.5])
    np.testing.assert_allclose(disagreement(probs), [np.std([0.9, 0.7, 0.2]), 0.0])
    np.testing.assert_allclose(confidence(np.array([0.5, 0.8, 0.1, 1.0])), [0.0, 0.6, 0.8, 1.0])


def _step_miscalibrated(n: int, seed: int):
    """P(up) jumps from 0.3 to 0.7 at s = 0 while the model reports a smooth sigmoid of s:
    a shape no monotone rescaling of the logit can fix, but isotonic regression can."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    y = (rng.uniform(size=n) < np.where(s > 0, 0.7, 0.3)).astype(int)
    return _sigmoid(0.4 * s), y


def test_calibration_improves_log_loss_on_a_miscalibrated_model():
    p, y = _step_miscalibrated(6000, seed=0)
    p_new, y_new = _step_miscalibrated(6000, seed=1)
    raw = log_loss(y_new, p_new)
    isotonic = Calibrator("isotonic").fit(p, y).transform(p_new)
    assert log_loss(y_new, isotonic) < raw - 0.03
    # Platt fixes over/under-confidence: a model reporting sigmoid(3x) for truth sigmoid(x)
    rng = np.random.default_rng(2)
    x = rng.normal(size=6000)
    truth = (rng.uniform(size=6000) < _sigmoid(x)).astype(int)
    over = _sigmoid(3 * x)
    x2 = rng.normal(size=6000)
    truth2 = (rng.uniform(size=6000) < _sigmoid(x2)).astype(int)
    platt = Calibrator("platt").fit(over, truth).transform(_sigmoid(3 * x2))
    assert log_loss(truth2, platt) < log_loss(truth2, _sigmoid(3 * x2)) - 0.1
    np.testing.assert_array_equal(Calibrator("none").fit(p, y).transform(p_new), p_new)
    # the numpy prediction path gives scikit-learn's numbers
    fitted = Calibrator("isotonic").fit(p, y)
    np.testing.assert_allclose(fitted.transform(p_new), fitted._model.predict(p_new), rtol=1e-12)
    fitted = Calibrator("platt").fit(over, truth)
    clipped = np.clip(over, 1e-4, 1 - 1e-4)
    logits = np.log(clipped / (1 - clipped))[:, None]
    np.testing.assert_allclose(
        fitted.transform(over), fitted._model.predict_proba(logits)[:, 1], rtol=1e-9
    )


def test_auto_calibration_picks_isotonic_for_a_step_shape():
    p, y = _step_miscalibrated(6000, seed=3)
    scores = score_calibration_methods(p, y, np.arange(6000), n_splits=3)
    assert scores["log_loss"].idxmin() == "isotonic"
    assert scores.loc["isotonic", "log_loss"] < scores.loc["none", "log_loss"] - 0.03
    # the ensemble (one base model) makes the same choice and beats no calibration
    probs = pd.DataFrame({"smooth": p})
    oof = OOFPredictions.assume_out_of_fold(probs, y, np.zeros(6000, dtype=int), TIMES[:6000])
    ensemble = Stacker(EnsembleConfig(inner_folds=4)).fit(oof)
    assert ensemble.calibration_ == "isotonic"
    p_new, y_new = _step_miscalibrated(6000, seed=4)
    fresh = pd.DataFrame({"smooth": p_new})
    calibrated = ensemble.predict(fresh)["prob_up"]
    uncalibrated = ensemble.predict(fresh, calibrated=False)["prob_up"]
    assert log_loss(y_new, calibrated) < log_loss(y_new, uncalibrated) - 0.02
    forced = Stacker(EnsembleConfig(calibration="platt")).fit(oof)
    assert forced.calibration_ == "platt"


def test_extra_inputs_are_used_and_checked(oof):
    rng = np.random.default_rng(5)
    # an extra input that shifts the base rate: ups are likelier when it is positive
    shift = rng.normal(size=len(oof.y))
    y = (rng.uniform(size=len(oof.y)) < _sigmoid(1.0 * shift)).astype(int)
    data = OOFPredictions.assume_out_of_fold(oof.probs, y, oof.fold, oof.time)
    extra = pd.DataFrame({"regime_1": shift})
    with_extra = Stacker().fit(data, extra)
    assert with_extra.coefficients()["regime_1"] > 0.5
    without = Stacker().fit(data)
    assert (
        with_extra.inner_scores_.loc[with_extra.calibration_, "log_loss"]
        < without.inner_scores_.loc[without.calibration_, "log_loss"] - 0.05
    )
    with pytest.raises(ValueError, match="fitted with extra inputs"):
        with_extra.predict(oof.probs)
    with pytest.raises(ValueError, match="missing values"):
        Stacker().fit(data, extra.assign(regime_1=np.nan))
    with pytest.raises(ValueError, match="lack base models"):
        without.predict(oof.probs[["sharp"]])


def test_ensemble_is_deterministic_and_survives_pickle_and_joblib(oof, tmp_path):
    one = Stacker().fit(oof)
    two = Stacker().fit(oof)
    probs, _ = _synthetic(seed=2)
    expected = one.predict(probs)
    pd.testing.assert_frame_equal(expected, two.predict(probs))
    pd.testing.assert_frame_equal(expected, pickle.loads(pickle.dumps(one)).predict(probs))
    joblib.dump(one, tmp_path / "ensemble.joblib")
    loaded = joblib.load(tmp_path / "ensemble.joblib")
    pd.testing.assert_frame_equal(expected, loaded.predict(probs))
    # columns are matched by name, not position
    pd.testing.assert_frame_equal(expected, one.predict(probs[["noise", "sharp"]]))


def test_walk_forward_stacking_predicts_each_fold_from_earlier_folds_only(oof):
    out = stack_walk_forward(oof, EnsembleConfig(inner_folds=3), min_train_folds=2)
    assert sorted(out["fold"].unique()) == [2, 3]
    assert out.index.isin(oof.probs.index).all() and len(out) == 2 * 1500
    # fold 2's ensemble saw only folds 0-1: flipping the labels of folds 2 and 3 cannot change
    # it, while fold 3's ensemble (trained on folds 0-2) must change
    flipped = OOFPredictions.assume_out_of_fold(
        oof.probs, np.where(oof.fold >= 2, 1 - oof.y, oof.y), oof.fold, oof.time
    )
    again = stack_walk_forward(flipped, EnsembleConfig(inner_folds=3), min_train_folds=2)
    pd.testing.assert_series_equal(
        out.loc[out.fold == 2, "prob_up"], again.loc[again.fold == 2, "prob_up"]
    )
    assert not np.allclose(out.loc[out.fold == 3, "prob_up"], again.loc[again.fold == 3, "prob_up"])
    assert log_loss(out["y"], out["prob_up"]) < log_loss(out["y"], out["prob_mean"])
    with pytest.raises(ValueError, match="need more than min_train_folds=4"):
        stack_walk_forward(oof, min_train_folds=4)


def test_real_candles_end_to_end(btc_30m):
    """Splits -> baselines per fold -> OOF -> regime extras -> walk-forward stack -> metrics."""
    close = btc_30m["close"]
    logret = np.log(close).diff()
    frame = pd.DataFrame(
        {
            "timestamp": btc_30m["timestamp"],
            "logret_1": logret,
            "ema_dist_20": np.log(close / close.ewm(span=20, adjust=False).mean()),
            "ret": logret.shift(-1),
        }
    )
    frame = pd.concat([frame, regime_features(close)], axis=1).iloc[48:-1].reset_index(drop=True)
    frame["y"] = (frame["ret"] > 0).astype(int)
    config = WalkForwardConfig(train_size=8000, test_size=4000, horizon=1, embargo=4)
    folds = walk_forward_splits(frame["timestamp"], config)
    probs = pd.DataFrame(index=frame.index, dtype=float)
    regime_proba = pd.DataFrame(index=frame.index, dtype=float)
    for fold in folds:
        train, test = frame.iloc[fold.train], frame.iloc[fold.test]
        for model in make_baselines():
            probs.loc[test.index, model.name] = model.fit(train, train["y"]).predict_proba_up(test)
        regimes = GaussianRegimes(RegimeConfig(n_regimes=2, n_init=1)).fit(
            train[["log_vol", "trend"]]
        )
        regime_proba.loc[test.index, "regime_1"] = regimes.predict_proba(test)["regime_1"]
    rows = np.concatenate([f.test for f in folds])
    oof = OOFPredictions.from_walk_forward(
        probs.iloc[rows], frame["y"].iloc[rows], frame["timestamp"].iloc[rows], folds
    )
    stacked = stack_walk_forward(oof, EnsembleConfig(inner_folds=3), regime_proba.iloc[rows])
    table = metrics_table(
        stacked.assign(model="ensemble", ret=frame["ret"].loc[stacked.index]),
        ("model", "fold"),
    )
    assert (table["status"] == "ok").all() and len(table) == len(folds) - 2
    # no edge to find in baselines on 30m BTC: the honest ensemble stays near a coin flip
    assert table["log_loss"].between(0.67, 0.72).all()
    assert stacked["disagreement"].ge(0).all() and stacked["confidence"].between(0, 1).all()
