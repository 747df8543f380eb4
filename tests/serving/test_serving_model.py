"""The model loader and the service core in-process, against the session's real MLflow and
Feast stores: alias -> fallback resolution, a window (ensemble-shaped) pyfunc fed from Feast
and from candles, load failures and retries."""

from __future__ import annotations

import json
import math
import os
import shutil
import time

import pandas as pd
import pytest
from serving_harness import FRESH, candles_payload, register_window_model, window_outputs

from candlecast.feature_store.store import to_feast_table
from candlecast.features import FeatureConfig, compute_features
from candlecast.serving.config import ServingConfig
from candlecast.serving.model import ModelError, load_signal_model
from candlecast.serving.schemas import PredictRequest, RequestError, SeriesRequest
from candlecast.serving.server import SignalServer

pytestmark = pytest.mark.slow

BTC = SeriesRequest(exchange="bitfinex", symbol="BTC/USD", timeframe="30m")
WINDOW = 8


WINDOW_NAME = f"window-ensemble-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(scope="module")
def window_model(serving_env) -> str:
    # one registered name per xdist worker: workers share the MLflow store
    return register_window_model(serving_env, WINDOW_NAME, WINDOW)


def _config(env, **overrides) -> ServingConfig:  # noqa: ANN001
    base = {
        "project_root": str(env.root),
        "tracking_uri": f"sqlite:///{env.root / 'mlflow' / 'mlruns.db'}",
        "feature_repo": str(env.root / "feature_repo"),
        "load_retry_seconds": None,
    }
    return ServingConfig(**{**base, **overrides})


def _loaded(config: ServingConfig) -> SignalServer:
    server = SignalServer(config)
    server.load()
    return server


def test_alias_resolves_first_then_fallbacks_in_order(serving_env, window_model):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{serving_env.root / 'mlflow' / 'mlruns.db'}")
    names = serving_env.names
    primary = load_signal_model(f"models:/{WINDOW_NAME}@champion",
                                ["models:/candlecast-lightgbm/latest"], names)
    assert primary.info.source == "primary" and primary.info.fallback_reason is None
    assert primary.info.model_version == f"{WINDOW_NAME}/{window_model}"
    assert primary.window_rows == WINDOW and primary.needs_keys

    fallback = load_signal_model("models:/candlecast-ensemble@champion",
                                 ["models:/nothing/latest", "models:/candlecast-lightgbm/1"],
                                 names)
    assert fallback.info.source == "fallback"
    assert fallback.info.model_version == "candlecast-lightgbm/1"
    assert "candlecast-ensemble" in fallback.info.fallback_reason
    assert "nothing" in fallback.info.fallback_reason
    assert fallback.info.lineage("params_hash") == "0123456789ab"

    with pytest.raises(ModelError, match="no model could be loaded.*nope.*missing"):
        load_signal_model("models:/nope@champion", ["models:/missing/3"], names)


def test_window_model_on_signal_gets_the_feast_window(serving_env, window_model):
    server = _loaded(_config(serving_env, model_uri=f"models:/{WINDOW_NAME}@champion"))
    assert server.ready, server.load_error
    body = server.signal(BTC)
    expected = window_outputs(serving_env.fresh_features.iloc[-WINDOW:]).iloc[0]
    assert body.status == "ok"
    assert body.prob_up == pytest.approx(expected["prob_up"], abs=1e-12)
    assert body.disagreement == WINDOW  # the model saw exactly the window
    assert body.quantiles == pytest.approx({k: expected[k] for k in ("q0.1", "q0.5", "q0.9")})
    assert body.confidence == pytest.approx(abs(body.prob_up - 0.5) * 2)
    assert server.metadata().window_rows == WINDOW


def test_window_model_on_predict_uses_the_last_rows_of_the_candles(serving_env, window_model):
    server = _loaded(_config(serving_env, model_uri=f"models:/{WINDOW_NAME}@champion"))
    candles = serving_env.fresh_candles.iloc[-300:].reset_index(drop=True)
    payload = candles_payload(candles)
    request = PredictRequest.model_validate_json(json.dumps(payload))
    body = server.predict(request)
    batch = to_feast_table(compute_features(candles, FeatureConfig()))
    expected = window_outputs(batch.iloc[-WINDOW:]).iloc[0]
    assert body.prob_up == pytest.approx(expected["prob_up"], abs=1e-9)
    assert body.disagreement == WINDOW
    payload["candles"] = payload["candles"][-(50 + WINDOW - 2):]
    short = PredictRequest.model_validate_json(json.dumps(payload))
    with pytest.raises(RequestError, match="at least 57") as err:
        server.predict(short)
    assert err.value.field == "candles"


def test_failed_load_keeps_the_service_up_but_not_ready(serving_env):
    server = _loaded(_config(serving_env, model_uri="models:/nope@champion",
                             fallback_model_uris=()))
    assert not server.ready
    assert "nope" in server.load_error
    answer = server.handle("signal", BTC)
    assert isinstance(answer, RequestError)
    assert (answer.status, answer.field) == (503, "model")
    meta = server.metadata()
    assert meta.ready is False and meta.model_version is None and "nope" in meta.load_error


def test_lineage_mismatch_refuses_to_serve(serving_env):
    server = _loaded(_config(serving_env, feature_service="direction_model_v2"))
    assert not server.ready
    assert "trained on feature service 'direction_model_v1'" in server.load_error


def test_load_is_retried_until_the_feature_store_appears(serving_env):
    late = serving_env.root / f"late_repo_{time.monotonic_ns()}"  # beside data/ (relative paths)
    server = SignalServer(_config(serving_env, feature_repo=str(late), load_retry_seconds=0.05))
    server.start_loading()
    try:
        assert server.wait_attempted(60)
        assert not server.ready and "feature_store.yaml" in server.load_error
        shutil.copytree(serving_env.root / "feature_repo", late)
        deadline = time.monotonic() + 60
        while not server.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.ready, server.load_error
        assert server.load_error is None
        assert server.signal(BTC).status == "ok"
    finally:
        server.stop()


def test_in_process_stale_and_clock(serving_env):
    """Staleness is measured against the injected clock: the same online row is fresh at its
    close and refused 1.5 bars later."""
    close = pd.Timestamp(serving_env.fresh_features["event_timestamp"].iloc[-1])
    server = _loaded(_config(serving_env))
    for offset, status in [(pd.Timedelta(0), "ok"), (pd.Timedelta(minutes=45), "ok"),
                           (pd.Timedelta(minutes=45, seconds=1), "stale"),
                           (pd.Timedelta(minutes=-31), "stale")]:
        server.clock = lambda o=offset: close + o
        body = server.signal(BTC)
        assert body.status == status, offset
        if status == "stale":
            assert body.prob_up is None and body.action == "flat"
        else:
            assert math.isfinite(body.prob_up)
    assert BTC.series_id == FRESH


# ----------------------------------------------------------------- the ensemble, called directly

def _small_zoo_pyfunc(folder):  # noqa: ANN001, ANN202
    """A real (small) Ensemble on real BTC/ETH 30m features, saved as the pipeline saves
    it: an MLflow pyfunc folder (``EnsemblePyfunc``, signature, window metadata)."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    from candlecast.common.time import naive_utc
    from candlecast.data.sample import load_sample
    from candlecast.features import feature_names
    from candlecast.models.baselines import MomentumModel, PersistenceModel
    from candlecast.models.ensemble import Ensemble, HorizonEnsemble, regime_inputs
    from candlecast.models.ensemble_pyfunc import EnsemblePyfunc
    from candlecast.models.lightgbm_model import LightGBMDirectionModel, LightGBMModelConfig
    from candlecast.models.regime import GarchVolatility, GaussianRegimes, RegimeConfig
    from candlecast.models.stacking import EnsembleConfig, OOFPredictions, Stacker

    root = os.path.join(os.path.dirname(__file__), "..", "..", "data", "sample")
    names = list(feature_names(FeatureConfig()))
    data = pd.concat([to_feast_table(compute_features(
        load_sample(root, "bitfinex_30m", s).iloc[:900], FeatureConfig()))
        for s in ("BTC/USD", "ETH/USD")], ignore_index=True)
    data = data[["series_id", "event_timestamp", *names]].dropna().reset_index(drop=True)
    y = (data.groupby("series_id")["logret_1"].shift(-1).fillna(0) > 0).astype(int)
    base = {"persistence": PersistenceModel(), "momentum": MomentumModel(),
            "lightgbm": LightGBMDirectionModel(LightGBMModelConfig(
                n_estimators=30, early_stopping_rounds=10, min_child_samples=40))}
    for model in base.values():
        model.fit(data, y)
    regimes = {k: {"garch": GarchVolatility().fit(g["logret_1"]),
                   "regimes": GaussianRegimes(RegimeConfig(n_regimes=3)).fit(
                       regime_inputs(g, 48, 48))} for k, g in data.groupby("series_id")}
    probs = pd.DataFrame({m: base[m].predict_proba_up(data) for m in base})
    extra = pd.DataFrame({"garch_vol": data["rv_48"], "regime_1": 0.3, "regime_2": 0.3})
    oof = OOFPredictions.assume_out_of_fold(probs, y.to_numpy(), np.zeros(len(data), int),
                                            data["event_timestamp"])
    stacker = Stacker(EnsembleConfig(calibration="platt", inner_folds=3)).fit(oof, extra)
    manifest = {"models": list(base), "extras": list(extra.columns),
                "context_bars": dict.fromkeys(base, 0), "window_rows": 64,
                "series_column": "series_id", "time_column": "event_timestamp",
                "feature_columns": names, "vol_window": 48, "trend_window": 48,
                "n_regimes": 3, "fill": {"garch_vol": 0.007, "chronos_spread": 0.0},
                "torch_threads": 0, "label": "label_up_1", "series": sorted(regimes)}
    member = HorizonEnsemble(base, stacker, regimes, manifest)
    ensemble = Ensemble({1: member}, {"horizons": [1], "primary_horizon": 1,
                                      "return_scale": {"1": 0.2}, "vol_fill": 0.007,
                                      "policy": None, "costs": None})
    ensemble.save(folder / "serving")
    example = naive_utc(data[data.series_id == data.series_id.iloc[0]].tail(64)[
        ensemble.input_columns].reset_index(drop=True), "event_timestamp")
    mlflow.pyfunc.save_model(
        str(folder / "model"), python_model=EnsemblePyfunc(),
        artifacts={"ensemble": str(folder / "serving")},
        signature=infer_signature(example, ensemble.predict(example), params={"rows": "last"}),
        metadata={"candlecast": {"window_rows": 64}})
    return ensemble, data


def test_ensemble_is_called_directly_with_the_pyfunc_answer(tmp_path):
    from candlecast.common.time import naive_utc
    from candlecast.serving.model import PyfuncSignalModel, parse_output

    ensemble, data = _small_zoo_pyfunc(tmp_path)
    model = load_signal_model(str(tmp_path / "model"), [], [])
    assert model.direct and model.window_rows == 64 and model.info.source == "local"
    through_mlflow = PyfuncSignalModel(model.pyfunc, model.info, [], answer_cache_size=0)
    through_mlflow._ensemble = None  # the pyfunc.predict path, MLflow's schema enforcement
    for _, series in data.groupby("series_id"):
        series = series.reset_index(drop=True)
        for end in range(90, len(series), 37):
            rows = series.iloc[end - 90:end]  # more rows than the window: the last 64 used
            direct = model.predict(rows)
            assert direct == through_mlflow.predict(rows)
            # the service's array path: the window cache's arrays in feature_columns order
            ns = pd.DatetimeIndex(rows["event_timestamp"]).as_unit("ns").asi8
            assert model.predict_window(str(rows["series_id"].iloc[-1]), ns, rows[list(
                model.feature_columns)].to_numpy(dtype="float64")) == direct
            old = parse_output(ensemble.primary._predict_frame(
                naive_utc(rows.tail(64).reset_index(drop=True), "event_timestamp"), "last"))
            assert direct.prob_up == old.prob_up and direct.confidence == old.confidence
            assert math.isclose(direct.disagreement, old.disagreement, rel_tol=1e-12)
    with pytest.raises(ModelError, match="mixes series"):
        model.predict(data.iloc[::50])


def test_answer_cache_hits_only_the_same_input_and_a_reload_starts_empty(tmp_path):
    _, data = _small_zoo_pyfunc(tmp_path)
    model = load_signal_model(str(tmp_path / "model"), [], [])
    rows = data[data.series_id == data.series_id.iloc[0]].tail(64).reset_index(drop=True)
    first = model.predict(rows)
    assert (model.answers.hits, model.answers.misses) == (0, 1)
    assert model.predict(rows.copy()) is first and model.answers.hits == 1
    changed = rows.copy()
    changed.loc[63, "ema_dist_20"] = -changed.loc[63, "ema_dist_20"]  # the same candle, rewritten
    other = model.predict(changed)
    assert model.answers.misses == 2 and other != first
    shifted = rows.copy()
    shifted.loc[0, "logret_1"] += 1e-12  # an older row of the window: still another input
    model.predict(shifted)
    assert model.answers.misses == 3
    reloaded = load_signal_model(str(tmp_path / "model"), [], [])
    assert reloaded.predict(rows) == first and reloaded.answers.misses == 1


def test_direct_online_read_is_the_feature_service_read(serving_env):
    """``FeastReader`` reads through the provider's online_read by default: the same row as
    Feast's ``get_online_features`` of the feature service, and None for an unknown series."""
    from candlecast.serving.online import FeastReader

    repo = serving_env.root / "feature_repo"
    direct = FeastReader(repo, "direction_model_v1", "candle_features")
    service = FeastReader(repo, "direction_model_v1", "candle_features", direct=False)
    for key in (FRESH, "bitfinex:ETH/USD:30m"):
        row = direct.latest(key)
        assert row is not None and row == service.latest(key)
        assert len(row.values) == len(service.columns) and row.event_timestamp.tz is not None
    assert direct.latest("bitfinex:XRP/USD:30m") is None
    assert service.latest("bitfinex:XRP/USD:30m") is None


def test_signal_in_two_steps_answers_a_known_input_without_model_work(serving_env, tmp_path):
    """``begin`` reads Feast and the answer cache; a new model input is left to ``run`` (the
    service's worker thread), the same input again is answered by ``begin`` itself, and both
    answers equal ``handle``'s one-step answer."""
    _small_zoo_pyfunc(tmp_path)
    server = _loaded(_config(serving_env, model_uri=str(tmp_path / "model"),
                             fallback_model_uris=()))
    close = pd.Timestamp(serving_env.fresh_features["event_timestamp"].iloc[-1])
    server.clock = lambda: close
    try:
        assert server.model.direct and server.window is not None
        first = server.begin("signal", BTC)
        assert first.pending
        with pytest.raises(RuntimeError, match="before"):
            server.finish(first)
        first.run()
        answer = server.finish(first)
        assert answer.status == "ok" and 0 < answer.prob_up < 1
        second = server.begin("signal", BTC)
        assert not second.pending and server.finish(second) == answer
        assert server.handle("signal", BTC) == answer
        assert (server.model.answers.hits, server.model.answers.misses) == (2, 1)
        unknown = server.begin("signal", SeriesRequest(exchange="bitfinex", symbol="XRP/USD",
                                                       timeframe="30m"))
        assert not unknown.pending and server.finish(unknown).status == 404
    finally:
        server.stop()


def test_service_freezes_the_loaded_stack_out_of_the_collector(serving_env):
    """With ``freeze_gc`` (as ``bentos/service.py`` builds it) a load ends with the objects
    alive in the collector's permanent generation; a plain in-process server leaves gc alone."""
    import gc

    gc.unfreeze()
    plain = _loaded(_config(serving_env))
    assert plain.ready and gc.get_freeze_count() == 0
    frozen = SignalServer(_config(serving_env), freeze_gc=True)
    try:
        frozen.load()
        assert frozen.ready and gc.get_freeze_count() > 10_000
        assert frozen.signal(BTC).status in ("ok", "stale")
    finally:
        gc.unfreeze()
        plain.stop()
        frozen.stop()


def test_signal_answers_the_bundled_policys_target(serving_env):
    """A model version that carries a policy: /signal's target is that Policy's decision on
    the model's horizon-4 forecast, for the position and holding time the caller reports;
    /metadata shows the policy."""
    from candlecast.backtest.config import CostConfig
    from candlecast.policy import Forecast, Policy, PolicyConfig

    config = PolicyConfig(horizon=4, entry_margin=0.05, exit_margin=-1.0, min_hold_bars=3,
                          vol_target=0.5, allow_short=True)
    name = f"policy-ensemble-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    register_window_model(serving_env, name, WINDOW, policy=config.model_dump(mode="json"))
    server = _loaded(_config(serving_env, model_uri=f"models:/{name}@champion"))
    assert server.metadata().policy == config.model_dump(mode="json")
    frame = server.window.update(server.reader.latest(BTC.series_id), pd.Timedelta("30min"))
    out = window_outputs(frame.tail(WINDOW))
    policy = Policy(config, CostConfig(), 17_520)
    forecast = Forecast(float(out["exp_ret_4"].iloc[0]), float(out["volatility"].iloc[0]))
    answers = {}
    for position, held in ((0.0, 0), (0.3, 1), (-0.3, 5), (0.3, 5)):
        request = SeriesRequest(exchange="bitfinex", symbol="BTC/USD", timeframe="30m",
                                position=position, bars_held=held)
        answer = server.signal(request)
        expected = policy.decide(forecast, position, held)
        assert answer.target_position == pytest.approx(expected.target)
        assert answer.policy.reason == str(expected.reason)
        assert answer.action == ("long" if expected.target > 0 else
                                 "short" if expected.target < 0 else "flat")
        assert answer.forecasts["4"].expected_return == pytest.approx(forecast.expected_return)
        assert answer.execution.entry == "market"
        answers[(position, held)] = answer
    assert len({a.policy.reason for a in answers.values()}) >= 2  # the position matters
    # a model without a policy is served flat, and says so
    plain = _loaded(_config(serving_env, model_uri=f"models:/{WINDOW_NAME}@champion"))
    answer = plain.signal(BTC)
    assert answer.target_position == 0.0 and answer.policy.reason == "no_policy"


def test_the_trader_parses_the_policy_answer(serving_env):
    """The service's answer and the trader's client agree on the contract: a real /signal
    answer with a policy parses and carries the target, the execution style and forecasts."""
    from candlecast.policy import PolicyConfig
    from candlecast.trading.signals import parse_signal

    config = PolicyConfig(horizon=4, entry_margin=0.05, exit_margin=-1.0, vol_target=0.5,
                          allow_short=True)
    name = f"policy-parse-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    register_window_model(serving_env, name, WINDOW, policy=config.model_dump(mode="json"))
    server = _loaded(_config(serving_env, model_uri=f"models:/{name}@champion"))
    answer = server.signal(SeriesRequest(exchange="bitfinex", symbol="BTC/USD",
                                         timeframe="30m", position=0.2, bars_held=4))
    parsed = parse_signal(json.loads(answer.model_dump_json()))
    assert parsed.has_target and parsed.target_position == answer.target_position
    assert parsed.execution.entry == "market" and 4 in parsed.forecasts
    stale = server.signal(SeriesRequest(exchange="bitfinex", symbol="ETH/USD", timeframe="30m"))
    if stale.status == "stale":  # the ETH rows of the session's store are old
        assert not parse_signal(json.loads(stale.model_dump_json())).has_target
