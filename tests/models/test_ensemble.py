"""The ensemble's array path (``Ensemble.predict_last``, ``predict(rows="last")``) gives the
answers of the frame path (``_predict_frame``, the implementation before it; and the last row
of ``rows="all"``) on real data: two real series, many windows, gaps included.

A small but complete ensemble is built here from the bundled Bitfinex 30m sample: persistence,
momentum, LightGBM, the committed tiny Chronos-2 (zero-shot), a small transformer, per-series
GARCH and regime mixtures, and a stacker with all extras. Every output is compared; the base
models that run in float64 (or the same float32 batch of one) are equal to the last bit, the
transformer's batch of one differs from the frame path's larger batch by float32 rounding only
(relative < 1e-5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from candlecast.data.sample import load_sample
from candlecast.feature_store.store import to_feast_table
from candlecast.features import FeatureConfig, compute_features, feature_names
from candlecast.models.baselines import MomentumModel, PersistenceModel
from candlecast.models.chronos_config import ChronosConfig
from candlecast.models.chronos_model import ChronosDirectionModel
from candlecast.models.ensemble import Ensemble, HorizonEnsemble, regime_inputs
from candlecast.models.lightgbm_model import LightGBMDirectionModel, LightGBMModelConfig
from candlecast.models.regime import GarchVolatility, GaussianRegimes, RegimeConfig
from candlecast.models.stacking import EnsembleConfig, OOFPredictions, Stacker
from candlecast.models.transformer import TransformerConfig, TransformerDirectionModel

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2] / "data" / "sample"
ASSET = Path(__file__).parent / "assets" / "tiny-chronos2"  # committed tiny Chronos-2
SYMBOLS = ("BTC/USD", "ETH/USD")
WINDOW = 64
EXACT = ["prob_persistence", "prob_momentum", "prob_lightgbm", "prob_chronos", "garch_vol",
         "regime_1", "regime_2", "chronos_spread"]


@pytest.fixture(scope="module")
def zoo() -> tuple[HorizonEnsemble, pd.DataFrame]:
    torch.set_num_threads(1)
    config = FeatureConfig()
    names = list(feature_names(config))
    frames = []
    for symbol in SYMBOLS:
        candles = load_sample(ROOT, "bitfinex_30m", symbol).iloc[:1400]
        frames.append(to_feast_table(compute_features(candles, config)))
    data = pd.concat(frames, ignore_index=True)
    data = data[["series_id", "event_timestamp", *names]].dropna().reset_index(drop=True)
    nxt = data.groupby("series_id")["logret_1"].shift(-1)
    data = data[nxt.notna()].assign(y=(nxt[nxt.notna()] > 0).astype(int)).reset_index(drop=True)
    train = data["event_timestamp"] < data["event_timestamp"].quantile(0.6)
    X, yt = data[train].drop(columns="y").reset_index(drop=True), data.loc[train, "y"]
    yt = yt.reset_index(drop=True)
    base = {
        "persistence": PersistenceModel(),
        "momentum": MomentumModel(),
        "lightgbm": LightGBMDirectionModel(LightGBMModelConfig(
            n_estimators=40, early_stopping_rounds=10, min_child_samples=40)),
        "chronos": ChronosDirectionModel(ChronosConfig(
            checkpoint=str(ASSET), context_length=32, min_past=8, finetune=False)),
        "transformer": TransformerDirectionModel(TransformerConfig(
            window=8, d_model=16, num_heads=2, dim_feedforward=32, batch_size=64,
            max_epochs=2, patience=1, feature_columns=tuple(names))),
    }
    for model in base.values():
        model.fit(X, yt)
    regimes = {}
    for key, rows in X.groupby("series_id"):
        regimes[key] = {
            "garch": GarchVolatility().fit(rows["logret_1"]),
            "regimes": GaussianRegimes(RegimeConfig(n_regimes=3)).fit(
                regime_inputs(rows, 48, 48)),
        }
    test = data[~train].reset_index(drop=True)
    stack_rows = test.groupby("series_id").head(300).reset_index(drop=True)
    labels = stack_rows.pop("y").to_numpy()
    test = test.drop(columns="y")
    probs = pd.DataFrame({m: base[m].predict_proba_up(stack_rows) for m in base})
    forecast = base["chronos"].predict_forecast(stack_rows)
    extra = pd.DataFrame({
        "garch_vol": stack_rows["rv_48"].to_numpy(),
        "regime_1": np.linspace(0.1, 0.5, len(stack_rows)),
        "regime_2": np.linspace(0.4, 0.2, len(stack_rows)),
        "chronos_spread": forecast["spread"].fillna(forecast["spread"].median()).to_numpy(),
    })
    oof = OOFPredictions.assume_out_of_fold(probs, labels, np.zeros(len(probs), int),
                                            stack_rows["event_timestamp"])
    stacker = Stacker(EnsembleConfig(calibration="platt", inner_folds=3)).fit(oof, extra)
    manifest = {
        "models": list(base), "extras": list(extra.columns),
        "context_bars": {"persistence": 0, "momentum": 0, "lightgbm": 0, "chronos": 32,
                         "transformer": 7},
        "window_rows": WINDOW, "series_column": "series_id", "time_column": "event_timestamp",
        "feature_columns": names, "vol_window": 48, "trend_window": 48, "n_regimes": 3,
        "fill": {"garch_vol": 0.007, "chronos_spread": 0.02}, "torch_threads": 1,
        "label": "label_up_1", "series": sorted(regimes),
    }
    return HorizonEnsemble(base, stacker, regimes, manifest), test


def _windows(test: pd.DataFrame) -> list[pd.DataFrame]:
    out = []
    for _, series in test.groupby("series_id"):
        series = series.reset_index(drop=True)
        for end in range(WINDOW, len(series), 23):
            out.append(series.iloc[end - WINDOW:end])
        gappy = series.iloc[100:100 + WINDOW].drop(index=[110, 140, 160, 161, 162])
        out.append(gappy)  # holes in the time grid
        out.append(series.iloc[200:205])  # shorter than a context: no Chronos forecast
    return out


def _compare(fast: pd.DataFrame, slow: pd.DataFrame, exact: list[str] = EXACT) -> None:
    assert list(fast.columns) == list(slow.columns)
    assert fast.dtypes.equals(slow.dtypes)
    pd.testing.assert_frame_equal(fast.iloc[:, :2], slow.iloc[:, :2])
    for column in exact:
        np.testing.assert_array_equal(fast[column], slow[column], err_msg=column)
    for column in fast.columns[2:]:
        np.testing.assert_allclose(fast[column], slow[column], rtol=1e-5, atol=1e-9,
                                   err_msg=column)


def test_last_row_array_path_equals_the_frame_path_on_real_windows(zoo):
    ensemble, test = zoo
    windows = _windows(test)
    assert len(windows) > 40
    for window in windows:
        _compare(ensemble.predict(window), ensemble._predict_frame(window, "last"))
    both = pd.concat([windows[3], windows[-4]]).sample(frac=1.0, random_state=0)
    fast = ensemble.predict(both)  # two series, shuffled rows
    assert len(fast) == 2
    # the frame path forecasts both series' contexts in one Chronos batch of 2: float32
    # rounding of that batch, the rest bit for bit
    exact = [c for c in EXACT if "chronos" not in c]
    _compare(fast, ensemble._predict_frame(both, "last"), exact)


def test_last_row_equals_the_all_rows_path(zoo):
    ensemble, test = zoo
    for window in _windows(test)[::5]:
        window = window.tail(40)  # rows="all" sees the same rows as the last row's contexts
        if (np.diff(window["event_timestamp"].to_numpy()) != np.timedelta64(30, "m")).any():
            continue  # with holes the frame path's grid differs by design (see module doc)
        last = ensemble.predict(window)
        every = ensemble.predict(window, rows="all").iloc[[-1]].reset_index(drop=True)
        assert last[["prob_up", "prob_chronos"]].notna().all().all()
        for column in last.columns[2:]:
            np.testing.assert_allclose(last[column], every[column], rtol=1e-5, atol=1e-9,
                                       err_msg=column)


def test_predict_last_takes_arrays_and_checks_them(zoo):
    ensemble, test = zoo
    window = _windows(test)[5]
    key = window["series_id"].iloc[-1]
    ns = pd.DatetimeIndex(window["event_timestamp"]).as_unit("ns").asi8
    values = window[ensemble.feature_columns].to_numpy(float)
    answer = ensemble.predict_last(key, ns, values)
    frame = ensemble._predict_frame(window, "last").iloc[0]
    assert set(answer) == set(frame.index[2:])
    np.testing.assert_allclose([answer[k] for k in frame.index[2:]],
                               frame.iloc[2:].to_numpy(float), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown to this ensemble"):
        ensemble.predict_last("kraken:DOGE/USD:30m", ns, values)
    with pytest.raises(ValueError, match="time order"):
        ensemble.predict_last(key, ns[::-1], values[::-1])
    with pytest.raises(ValueError, match="shape"):
        ensemble.predict_last(key, ns, values[:, 1:])


def test_accelerated_ensemble_answers_as_eager_mode_through_the_traced_network(zoo, monkeypatch):
    """``accelerate`` traces Chronos-2 for one context; every answer stays what eager mode
    gives (float32 rounding at most), and single contexts really go through the trace."""
    from candlecast.models import chronos_model

    ensemble, test = zoo
    windows = _windows(test)
    series = [str(w["series_id"].iloc[-1]) for w in windows]
    arrays = [(pd.DatetimeIndex(w["event_timestamp"]).as_unit("ns").asi8,
               w[ensemble.feature_columns].to_numpy(dtype=np.float64)) for w in windows]
    eager = [ensemble.predict_last(s, ns, v) for s, (ns, v) in zip(series, arrays, strict=True)]
    chronos = ensemble.base["chronos"]
    try:
        assert ensemble.accelerate() == ["chronos"] and chronos._traced is not None

        def no_eager(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError("a single context went through eager mode")

        monkeypatch.setattr(chronos_model, "eager_quantiles", no_eager)
        fast = [ensemble.predict_last(s, ns, v) for s, (ns, v) in zip(series, arrays,
                                                                       strict=True)]
    finally:
        chronos._traced = None  # the module's other tests use eager mode
    assert sum(np.isfinite(a["chronos_spread"]) for a in eager) > 30
    for slow, quick in zip(eager, fast, strict=True):
        assert slow.keys() == quick.keys()
        for key in slow:
            np.testing.assert_allclose(quick[key], slow[key], rtol=1e-6, atol=1e-9,
                                       err_msg=key)


def test_the_multi_horizon_ensemble_answers_every_horizon_and_the_policys_alone(zoo):
    """Two horizons (the same stack standing in for both): ``prob_up_<h>`` is the stack's
    P(up), ``exp_ret_<h> = beta_h x vol x sqrt(h) x Phi^-1(p)`` with the GARCH vol forecast;
    the array path equals the frame path; asking for one horizon runs that stack only; the
    bundled policy comes back out of a save/load."""
    from scipy.stats import norm

    member, test = zoo
    ensemble = Ensemble({1: member, 4: member}, {
        "horizons": [1, 4], "primary_horizon": 1, "return_scale": {"1": 0.2, "4": 0.3},
        "vol_fill": 0.007, "policy": {"horizon": 4}, "costs": {}})
    window = _windows(test)[7]
    last = ensemble.predict(window).iloc[0]
    for h, beta in ((1, 0.2), (4, 0.3)):
        p = last[f"prob_up_{h}"]
        assert p == pytest.approx(last["prob_up"])
        assert last[f"exp_ret_{h}"] == pytest.approx(
            beta * last["volatility"] * np.sqrt(h) * norm.ppf(p), rel=1e-9)
    assert 0 < last["volatility"] < 0.1
    every = ensemble.predict(window, rows="all").iloc[-1]
    for column in ("prob_up_4", "exp_ret_4", "volatility"):
        assert every[column] == pytest.approx(last[column], rel=1e-5)
    key = window["series_id"].iloc[-1]
    ns = pd.DatetimeIndex(window["event_timestamp"]).as_unit("ns").asi8
    values = window[ensemble.feature_columns].to_numpy(float)
    only = ensemble.predict_last(key, ns, values, horizons=[4])
    assert "exp_ret_1" not in only and only["exp_ret_4"] == pytest.approx(last["exp_ret_4"])
    with pytest.raises(ValueError, match="not in this ensemble"):
        ensemble.predict_last(key, ns, values, horizons=[16])


def test_the_bundle_round_trips_with_its_policy(zoo, tmp_path):
    member, _ = zoo
    policy = {"horizon": 4, "entry_margin": 2.0}
    ensemble = Ensemble({1: member, 4: member}, {
        "horizons": [1, 4], "primary_horizon": 1, "return_scale": {"1": 0.2, "4": 0.3},
        "vol_fill": 0.007, "policy": policy, "costs": {"taker_fee_bps": 5.0}})
    loaded = Ensemble.load(ensemble.save(tmp_path / "bundle"))
    assert loaded.horizons == [1, 4] and loaded.policy == policy
    assert loaded.costs == {"taker_fee_bps": 5.0} and loaded.return_scale(4) == 0.3
    with pytest.raises(ValueError, match="expected-return scale"):
        Ensemble({1: member, 4: member}, {"horizons": [1, 4], "primary_horizon": 1,
                                          "return_scale": {"1": 0.2}, "vol_fill": 0.0})
