"""The ASGI request guard in front of BentoML, driven in-process (Starlette's TestClient)."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.testclient import TestClient

from candlecast.common.auth import control_token_from_env
from candlecast.serving.guard import CONTROL_ROUTES, GuardSettings, RequestGuard

SIGNAL = {"exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "30m"}


class Recorder:
    """Downstream app: records what reached it and answers 200 with the body it read."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["method"], scope["path"], body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body or b"{}"})


@pytest.fixture
def app():  # noqa: ANN201
    downstream = Recorder()
    return downstream, TestClient(RequestGuard(downstream, GuardSettings(max_body_bytes=2048)))


def test_valid_body_reaches_the_app_unchanged(app):
    downstream, client = app
    raw = json.dumps(SIGNAL).encode()
    response = client.post("/signal", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert downstream.seen == [("POST", "/signal", raw)]


def test_other_paths_pass_through_untouched(app):
    downstream, client = app
    client.get("/livez")
    client.post("/whatever", content=b"not json", headers={"content-type": "text/plain"})
    assert [s[:2] for s in downstream.seen] == [("GET", "/livez"), ("POST", "/whatever")]


def test_get_metadata_becomes_post_with_an_empty_object(app):
    downstream, client = app
    assert client.get("/metadata").status_code == 200
    assert client.post("/metadata", content=b"junk").status_code == 200  # body ignored
    assert downstream.seen == [("POST", "/metadata", b"{}"), ("POST", "/metadata", b"{}")]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), [
    ("GET", "/signal", {}, 405, "method"),
    ("PUT", "/predict", {}, 405, "method"),
    ("POST", "/signal", {"content": b"a=1",
                         "headers": {"content-type": "application/x-www-form-urlencoded"}},
     415, "content-type"),
    ("POST", "/signal", {"content": b"x", "headers": {"content-type": "multipart/form-data"}},
     415, "content-type"),
    ("POST", "/signal", {"content": b"{", "headers": {"content-type": "application/json"}},
     400, "body"),
    ("POST", "/signal", {"json": {**SIGNAL, "timeframe": "30"}}, 422, "timeframe"),
    ("POST", "/predict", {"json": SIGNAL}, 422, "candles"),
    ("POST", "/predict", {"content": b"[" + b"1," * 3000 + b"1]",
                          "headers": {"content-type": "application/json"}}, 413, "body"),
])
def test_refusals_are_json_naming_the_field(app, method, path, kwargs, status, field):
    downstream, client = app
    response = client.request(method, path, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["field"] == field and response.json()["error"]
    assert downstream.seen == []


def test_body_limit_is_enforced_without_content_length(app):
    downstream, client = app

    def chunks():
        yield b'{"exchange": "'
        for _ in range(40):
            yield b"x" * 100

    response = client.post("/signal", content=chunks(),
                           headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["field"]) == (413, "body")
    assert downstream.seen == []


def test_settings_are_read_per_request(app):
    downstream, client = app
    guard = client.app
    guard.settings.max_body_bytes = 10
    assert client.post("/signal", json=SIGNAL).status_code == 413
    guard.settings.max_body_bytes = 10_000
    assert client.post("/signal", json=SIGNAL).status_code == 200


TOKEN = "ctl-0123456789abcdef-token"


def _guarded(token: str | None) -> tuple[Recorder, TestClient]:
    downstream = Recorder()
    control = control_token_from_env({"MY_CONTROL": token} if token else {}, "MY_CONTROL")
    settings = GuardSettings(max_body_bytes=2048, control=control)
    return downstream, TestClient(RequestGuard(downstream, settings))


@pytest.mark.parametrize(("headers", "why"), [
    ({}, "no control token"),
    ({"authorization": f"Basic {TOKEN}"}, "no control token"),
    ({"authorization": "Bearer "}, "no control token"),
    ({"authorization": f"Bearer {TOKEN}x"}, "wrong control token"),
    ({"authorization": f"Bearer {TOKEN[:-1]}"}, "wrong control token"),
])
def test_reload_without_the_token_is_refused_401_and_logged_without_it(headers, why, caplog):
    downstream, client = _guarded(TOKEN)
    with caplog.at_level(logging.WARNING, logger="candlecast.serving.guard"):
        response = client.post("/reload", json={}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["field"] == "authorization" and why in response.json()["error"]
    assert "MY_CONTROL" in response.json()["error"]
    assert downstream.seen == []
    assert [r.getMessage() for r in caplog.records] == [
        f"refused POST /reload from testclient: {why}"]
    assert TOKEN[:8] not in caplog.text and TOKEN[:8] not in response.text


def test_reload_with_the_token_reaches_the_app_and_other_routes_need_none():
    downstream, client = _guarded(TOKEN)
    ok = client.post("/reload", json={}, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert client.post("/signal", json=SIGNAL).status_code == 200  # not a control
    assert [s[:2] for s in downstream.seen] == [("POST", "/reload"), ("POST", "/signal")]
    assert downstream.seen[0][2] == b"{}"
    assert client.get("/reload", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_without_a_configured_token_every_control_is_refused(caplog):
    downstream, client = _guarded(None)
    for headers in ({}, {"authorization": f"Bearer {TOKEN}"}):
        response = client.post("/reload", json={}, headers=headers)
        assert response.status_code == 403
        assert "MY_CONTROL is not set on the server" in response.json()["error"]
    assert downstream.seen == []
    # the default settings are the same: safe by default
    assert not GuardSettings().control.configured
    assert {"/reload"} == CONTROL_ROUTES
