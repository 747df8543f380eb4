"""Picking up a new champion without dropping requests: ``reload`` loads in the background,
the old model answers until the new one is ready, then both model and window swap at once and
``/metadata`` reports the new version. In-process against the session's real stores, and over
HTTP on the running service."""

from __future__ import annotations

import os
import threading
import time

import pytest
from serving_harness import CONTROL_TOKEN, register_window_model

from candlecast.serving.config import ServingConfig
from candlecast.serving.schemas import RequestError, SeriesRequest
from candlecast.serving.server import SignalServer

pytestmark = pytest.mark.slow

BTC = SeriesRequest(exchange="bitfinex", symbol="BTC/USD", timeframe="30m")
NAME = f"reload-ensemble-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def test_reload_swaps_to_the_new_champion_while_requests_keep_being_answered(serving_env):
    first = register_window_model(serving_env, NAME, 4)
    config = ServingConfig(
        project_root=str(serving_env.root),
        tracking_uri=f"sqlite:///{serving_env.root / 'mlflow' / 'mlruns.db'}",
        feature_repo=str(serving_env.root / "feature_repo"),
        model_uri=f"models:/{NAME}@champion", fallback_model_uris=(),
        load_retry_seconds=None, max_feature_age_bars=1000.0,
    )
    server = SignalServer(config)
    server.load()
    assert server.ready and server.metadata().model_version == f"{NAME}/{first}"
    before = server.signal(BTC)
    assert before.model_version == f"{NAME}/{first}" and before.disagreement == 4.0

    second = register_window_model(serving_env, NAME, 6)  # the new champion: a wider window
    answers, errors, stop = [], [], threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            result = server.handle("signal", BTC)
            (errors if isinstance(result, RequestError) else answers).append(result)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        started = server.reload()
        assert started["status"] == "reloading"
        assert started["model_version"] == f"{NAME}/{first}"
        assert server.wait_reloaded(120)
    finally:
        stop.set()
        thread.join(30)
    assert errors == []  # no request refused during the reload
    assert server.reload_error is None and server.reloads == 1
    after = server.signal(BTC)
    # model and window changed together: the new model sees its own 6-row window
    assert after.model_version == f"{NAME}/{second}" and after.disagreement == 6.0
    assert server.metadata().model_version == f"{NAME}/{second}"
    versions = {a.model_version for a in answers}
    assert versions <= {f"{NAME}/{first}", f"{NAME}/{second}"}
    for a in answers:  # never a mixed pair (old model with the new window or vice versa)
        assert a.disagreement == (4.0 if a.model_version.endswith(f"/{first}") else 6.0)


def test_a_failed_reload_keeps_serving_the_current_model(serving_env):
    config = ServingConfig(
        project_root=str(serving_env.root),
        tracking_uri=f"sqlite:///{serving_env.root / 'mlflow' / 'mlruns.db'}",
        feature_repo=None, model_uri="models:/candlecast-lightgbm/1", fallback_model_uris=(),
        load_retry_seconds=None,
    )
    server = SignalServer(config)
    server.load()
    server.config = config.model_copy(update={"model_uri": "models:/no-such-model@champion"})
    assert server.reload()["status"] == "reloading"
    assert server.wait_reloaded(60)
    assert server.reload_error and "no-such-model" in server.reload_error
    assert server.metadata().model_version == "candlecast-lightgbm/1"


def test_reload_over_http_needs_the_control_token(client, service):
    version = client.post("/metadata", json={}).json()["model_version"]
    for headers in ({}, {"authorization": f"Bearer {CONTROL_TOKEN}-not"},
                    {"authorization": CONTROL_TOKEN}):
        refused = client.post("/reload", json={}, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["field"] == "authorization"
        assert "CANDLECAST_CONTROL_TOKEN" in refused.json()["error"]
    deadline = time.monotonic() + 10  # the worker's log reaches the file shortly
    while "refused POST /reload" not in service.log_tail(400) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = service.log_tail(400)
    assert log.count("refused POST /reload from 127.0.0.1: no control token") >= 2
    assert "refused POST /reload from 127.0.0.1: wrong control token" in log
    assert CONTROL_TOKEN not in log
    assert client.post("/metadata", json={}).json()["model_version"] == version  # no reload

    answer = client.post("/reload", json={},
                         headers={"authorization": f"Bearer {CONTROL_TOKEN}"})
    assert answer.status_code == 200
    assert answer.json()["status"] in ("reloading", "already_reloading")
    assert answer.json()["model_version"] == version
    # requests keep being answered while it reloads, and the version is reported after
    assert client.post("/metadata", json={}).json()["model_version"] == version
