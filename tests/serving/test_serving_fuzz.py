"""Property-based runs against the live service: no payload, valid or not, gets a 5xx.

* schemathesis 4 generates requests from the service's own OpenAPI document (``/docs.json``),
  positive (schema-valid) and negative (schema-violating) cases for every operation;
* a hypothesis strategy of its own aims where the schema cannot: candle lists built from real
  candles with values, order and series deliberately broken.

Both are bounded in examples and time (no shrinking database, fixed seeds).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from serving_harness import candles_payload

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def _assert_client_error_shape(response_status: int, text: str, what: str) -> None:
    assert response_status < 500, f"{what} -> {response_status}: {text[:500]}"
    if 400 <= response_status < 500:
        body = json.loads(text)
        assert isinstance(body, dict) and set(body) == {"error", "field"}, f"{what}: {text}"
        assert body["error"] and body["field"]


def _schema_run(op, mode, url, session, calls):  # noqa: ANN001, ANN202
    """A hypothesis test of one operation in one generation mode."""
    ours = op.path in ("/signal", "/predict", "/metadata", "/reload")  # behind the guard

    @FUZZ
    @seed(20240101)
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case) -> None:  # noqa: ANN001
        calls[0] += 1
        response = case.call(base_url=url, session=session, timeout=15)
        what = f"{case.method} {case.path} {mode.value} body={case.body!r:.300}"
        if ours:
            _assert_client_error_shape(response.status_code, response.text, what)
        else:  # BentoML's own routes (/livez, /readyz, /metrics, ...)
            assert response.status_code < 500, what

    return run


def test_openapi_schema_fuzz_finds_no_5xx(service):
    import schemathesis  # test dependency: schemathesis==4.32.5
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{service.url}/docs.json", timeout=10)
    operations = [r.ok() for r in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/signal", "/predict", "/metadata"} <= paths
    started, calls = time.monotonic(), [0]
    with requests.Session() as session:
        for op in operations:
            if op.path == "/portfolio":  # fuzzed where a portfolio model is served:
                continue  # tests/pipeline/test_portfolio_pipeline.py (here: 503, below)
            # only request bodies with a schema can be violated (negative cases)
            modes = [GenerationMode.POSITIVE]
            if op.path in ("/signal", "/predict"):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                _schema_run(op, mode, service.url, session, calls)()
    assert calls[0] >= 100
    assert time.monotonic() - started < 120
    # this service has no portfolio model: /portfolio refuses in the one error shape
    body = {"exchange": "bitfinex", "timeframe": "30m", "candles": {"BTC/USD": [
        {"timestamp": "2019-01-01T00:00:00Z", "open": 1, "high": 1, "low": 1, "close": 1,
         "volume": 0}]}}
    refused = requests.post(f"{service.url}/portfolio", json=body, timeout=15)
    assert refused.status_code == 503 and refused.json()["field"] == "model"
    assert "portfolio" in refused.json()["error"]


def _candles(btc, n=60):  # noqa: ANN001, ANN202
    return candles_payload(btc.iloc[-n:].reset_index(drop=True))


BAD_NUMBERS = st.sampled_from([0.0, -1.0, 1e-300, 1e300, float("nan"), float("inf"),
                               -float("inf"), "1", None, True, [], {}])


@st.composite
def broken_predict_payloads(draw, base):  # noqa: ANN001, ANN201
    body = json.loads(json.dumps(base))
    candles = body["candles"]
    kind = draw(st.sampled_from(["value", "time", "order", "drop", "series", "length", "key"]))
    i = draw(st.integers(0, len(candles) - 1))
    if kind == "time":  # a valid ISO time anywhere in 1..9999, often at either end
        i = draw(st.sampled_from([0, len(candles) - 1, i]))
        when = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                                 timezones=st.just(UTC)))
        candles[i]["timestamp"] = when.isoformat()
    elif kind == "value":
        key = draw(st.sampled_from(["open", "high", "low", "close", "volume", "timestamp"]))
        candles[i][key] = draw(BAD_NUMBERS | st.text(max_size=30))
    elif kind == "order":
        j = draw(st.integers(0, len(candles) - 1))
        candles[i], candles[j] = candles[j], candles[i]
    elif kind == "drop":
        del candles[i: i + draw(st.integers(1, 20))]
    elif kind == "series":
        key = draw(st.sampled_from(["exchange", "symbol", "timeframe"]))
        body[key] = draw(st.text(max_size=40) | st.sampled_from(["0m", "9999w", "1M", "ETH/USD"]))
    elif kind == "length":
        body["candles"] = candles[: draw(st.integers(0, 55))]
    else:
        body[draw(st.text(min_size=1, max_size=10))] = draw(BAD_NUMBERS)
    return body


def test_broken_candle_payloads_never_5xx(client, btc_30m):
    base = _candles(btc_30m)

    @FUZZ
    @seed(7)
    @given(payload=broken_predict_payloads(base))
    def run(payload) -> None:  # noqa: ANN001
        text = json.dumps(payload)  # NaN/Infinity become JSON's non-standard literals
        response = client.post("/predict", content=text,
                               headers={"content-type": "application/json"})
        _assert_client_error_shape(response.status_code, response.text, text[:300])

    run()
    assert client.get("/readyz").status_code == 200


def test_random_bytes_never_5xx(client):
    @FUZZ
    @seed(3)
    @given(body=st.binary(max_size=300), path=st.sampled_from(["/signal", "/predict",
                                                                 "/metadata"]))
    def run(body: bytes, path: str) -> None:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        _assert_client_error_shape(response.status_code, response.text, repr(body[:100]))

    run()
    assert client.get("/readyz").status_code == 200
