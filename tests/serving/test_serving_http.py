"""The real service (`bentoml serve` on 127.0.0.1) over HTTP: signal, stale refusal, predict
parity with the batch features, 4xx naming the field, metadata, metrics, readiness."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from serving_harness import FRESH, LINEAGE, STALE, batch_prob, candles_payload

pytestmark = pytest.mark.slow

BTC = {"exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "30m"}
RESPONSE_KEYS = {"status", "prob_up", "quantiles", "confidence", "disagreement", "action",
                 "size_fraction", "stop_price", "take_profit", "model_version",
                 "feature_timestamp", "target_position", "policy", "execution", "forecasts",
                 "volatility"}


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def test_health_and_readiness(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.post("/metadata").json()["ready"] is True


def test_metadata_reports_model_lineage_and_fallback(client, serving_env):
    meta = client.post("/metadata").json()
    assert meta == client.get("/metadata").json()
    assert meta["model_version"] == "candlecast-lightgbm/1"
    assert meta["model_source"] == "fallback"
    assert meta["model_uri"] == "models:/candlecast-ensemble@champion"
    assert "candlecast-ensemble" in meta["fallback_reason"]
    assert meta["mlflow_run_id"] == serving_env.run_id
    assert meta["training_data_version"] == LINEAGE["lineage.data_version"]
    assert meta["params_hash"] == LINEAGE["lineage.params_hash"]
    assert meta["git_commit"] == LINEAGE["lineage.git_commit"]
    assert meta["feature_service"] == "direction_model_v1"
    assert meta["flavor"] == "lightgbm"
    assert meta["features"] == serving_env.names
    assert meta["load_error"] is None


def test_signal_on_fresh_features_matches_the_model(client, serving_env):
    body = client.post("/signal", json=BTC).json()
    assert set(body) == RESPONSE_KEYS
    expected = float(serving_env.model.predict_proba(
        serving_env.fresh_features[serving_env.names].iloc[[-1]])[0, 1])
    assert body["status"] == "ok"
    assert body["prob_up"] == pytest.approx(expected, abs=1e-12)
    assert body["confidence"] == pytest.approx(abs(expected - 0.5) * 2, abs=1e-12)
    close_time = serving_env.fresh_candles["timestamp"].iloc[-1] + pd.Timedelta(minutes=30)
    assert body["feature_timestamp"] == _iso(close_time)
    # the hold-out LightGBM fallback carries no policy: it is served flat, and says so
    assert body["target_position"] == 0.0 and body["action"] == "flat"
    assert body["policy"]["reason"] == "no_policy" and body["execution"] is None
    assert body["size_fraction"] == 0.0 and body["stop_price"] is None
    assert body["take_profit"] is None
    assert body["model_version"] == "candlecast-lightgbm/1"
    # the caller's position is part of the contract (validated like every field)
    held = client.post("/signal", json={**BTC, "position": 0.5, "bars_held": 3})
    assert held.status_code == 200 and held.json()["target_position"] == 0.0
    for bad in ({"position": 1.5}, {"position": "0.5"}, {"bars_held": -1}):
        refused = client.post("/signal", json={**BTC, **bad})
        assert refused.status_code == 422, bad
        assert refused.json()["field"] in ("position", "bars_held")


def test_signal_refuses_stale_features(client, eth_30m):
    body = client.post("/signal", json={**BTC, "symbol": "ETH/USD"}).json()
    assert body["status"] == "stale"
    assert body["prob_up"] is None and body["quantiles"] is None
    assert body["confidence"] is None and body["disagreement"] is None
    assert (body["action"], body["size_fraction"]) == ("flat", 0.0)
    assert body["stop_price"] is None and body["take_profit"] is None
    assert body["feature_timestamp"] == _iso(eth_30m["timestamp"].iloc[-1]
                                             + pd.Timedelta(minutes=30))


@pytest.mark.parametrize(("change", "field"), [
    ({"symbol": "XRP/USD"}, "symbol"),
    ({"exchange": "kraken"}, "exchange"),
    ({"timeframe": "1h"}, "timeframe"),
])
def test_unknown_series_is_404_naming_the_field(client, change, field):
    response = client.post("/signal", json={**BTC, **change})
    assert response.status_code == 404
    assert response.json()["field"] == field
    assert "unknown series" in response.json()["error"]


def test_predict_equals_the_model_on_batch_features(client, serving_env, btc_30m):
    # fresh (shifted) candles, and a replay of real 2019 candles: both answered
    for candles in (serving_env.fresh_candles.iloc[-900:], btc_30m.iloc[-2500:-1600]):
        candles = candles.reset_index(drop=True)
        body = client.post("/predict", json=candles_payload(candles)).json()
        assert body["status"] == "ok", body
        assert body["prob_up"] == pytest.approx(batch_prob(serving_env, candles), abs=1e-9)
        assert body["feature_timestamp"] == _iso(candles["timestamp"].iloc[-1]
                                                 + pd.Timedelta(minutes=30))


def test_predict_on_the_online_candles_equals_signal(client, serving_env):
    """Same candles -> same features -> same answer, whichever path computed the features."""
    candles = serving_env.fresh_candles.iloc[-1000:]  # > priming_bars: EMA seeds forgotten
    predicted = client.post("/predict", json=candles_payload(candles)).json()
    signalled = client.post("/signal", json=BTC).json()
    assert predicted["prob_up"] == pytest.approx(signalled["prob_up"], abs=1e-9)
    for key in ("action", "feature_timestamp", "model_version"):
        assert predicted[key] == signalled[key]
    assert predicted["size_fraction"] == pytest.approx(signalled["size_fraction"], rel=1e-6)


def test_predict_needs_warm_up_candles(client, btc_30m):
    candles = btc_30m.iloc[-50:].reset_index(drop=True)
    assert client.post("/predict", json=candles_payload(candles)).status_code == 200
    response = client.post("/predict", json=candles_payload(candles.iloc[1:]))
    assert response.status_code == 422
    assert response.json()["field"] == "candles"
    assert "at least 50" in response.json()["error"]


def _predict_body(btc_30m: pd.DataFrame) -> dict:
    return candles_payload(btc_30m.iloc[-60:].reset_index(drop=True))


BAD_CANDLES = [
    # (mutation of candle 5, expected field)
    (lambda c: c.update(close=float("nan")), "candles[5].close"),
    (lambda c: c.update(open=-1.0), "candles[5].open"),
    (lambda c: c.update(low=0.0), "candles[5].low"),
    (lambda c: c.update(volume=-3.0), "candles[5].volume"),
    (lambda c: c.update(high="8000"), "candles[5].high"),
    (lambda c: c.update(volume=True), "candles[5].volume"),
    (lambda c: c.update(high=c["low"] / 2), "candles[5].high"),
    (lambda c: c.update(timestamp="2019-09-30T10:00:00"), "candles[5].timestamp"),
    (lambda c: c.update(timestamp="yesterday"), "candles[5].timestamp"),
    (lambda c: c.update(timestamp="9999-01-01T00:00:00Z"), "candles[5].timestamp"),
    (lambda c: c.pop("volume"), "candles[5].volume"),
    (lambda c: c.update(vwap=1.0), "candles[5].vwap"),
]


@pytest.mark.parametrize(("mutate", "field"), BAD_CANDLES)
def test_bad_candle_is_422_naming_the_field(client, btc_30m, mutate, field):
    body = _predict_body(btc_30m)
    mutate(body["candles"][5])
    response = client.post("/predict", content=json.dumps(body),
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(("reorder", "field"), [
    (lambda cs: cs.__setitem__(7, dict(cs[6])), "candles[7].timestamp"),  # duplicate
    (lambda cs: cs.__setitem__(slice(3, 5), [cs[4], cs[3]]), "candles[4].timestamp"),  # swap
])
def test_unsorted_or_duplicate_timestamps_are_422(client, btc_30m, reorder, field):
    body = _predict_body(btc_30m)
    reorder(body["candles"])
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_candle_that_has_not_closed_is_refused(client, serving_env):
    body = candles_payload(serving_env.fresh_candles.iloc[-100:])
    last = pd.Timestamp(body["candles"][-1]["timestamp"])
    # a candle two steps on (after a one-bar gap) cannot have closed within this test session
    extra = dict(body["candles"][-1], timestamp=_iso(last + pd.Timedelta(minutes=60)))
    body["candles"].append(extra)
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == "candles[100].timestamp"
    assert "not closed" in response.json()["error"]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({**BTC, "timeframe": 30}, 422, "timeframe"),
    ({"exchange": "bitfinex", "symbol": "BTC/USD"}, 422, "timeframe"),
    ({**BTC, "symbol": "btc/usd"}, 422, "symbol"),
    ({**BTC, "exchange": "Binance!"}, 422, "exchange"),
    ({**BTC, "timeframe": "99999999999w"}, 422, "timeframe"),
    ({**BTC, "extra": 1}, 422, "extra"),
    ([BTC], 422, "body"),
    ("BTC", 422, "body"),
])
def test_bad_signal_payloads_name_the_field(client, body, status, field):
    response = client.post("/signal", json=body)
    assert (response.status_code, response.json()["field"]) == (status, field)
    assert response.json()["error"]


def test_transport_level_refusals(client, btc_30m):
    garbage = client.post("/signal", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert (garbage.status_code, garbage.json()["field"]) == (400, "body")
    form = client.post("/signal", content=b"a=1",
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert (form.status_code, form.json()["field"]) == (415, "content-type")
    wrong_method = client.get("/predict")
    assert (wrong_method.status_code, wrong_method.json()["field"]) == (405, "method")
    too_many = candles_payload(btc_30m.iloc[-1001:].reset_index(drop=True))
    response = client.post("/predict", json=too_many)
    assert (response.status_code, response.json()["field"]) == (422, "candles")


def test_huge_bodies_are_413(client, btc_30m):
    big = json.dumps(candles_payload(btc_30m.iloc[-1600:].reset_index(drop=True))).encode()
    assert len(big) > 200_000  # the test config's max_body_bytes
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["field"]) == (413, "body")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(big), 16_384):
            yield big[i:i + 16_384]

    streamed = client.post("/predict", content=chunks(),
                           headers={"content-type": "application/json"})
    assert (streamed.status_code, streamed.json()["field"]) == (413, "body")
    assert client.get("/livez").status_code == 200


def test_openapi_documents_the_contract(client):
    spec = client.get("/docs.json").json()
    for path in ("/signal", "/predict", "/metadata"):
        assert "post" in spec["paths"][path]
    text = json.dumps(spec)
    for key in RESPONSE_KEYS:
        assert f'"{key}"' in text


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_prometheus_metrics(client):
    client.post("/signal", json=BTC)
    client.post("/signal", json={**BTC, "symbol": "ETH/USD"})
    client.post("/signal", json={**BTC, "symbol": "XRP/USD"})
    text = client.get("/metrics").text
    assert _metric(text, "candlecast_signals_total", endpoint="signal", status="stale",
                   action="flat") >= 1
    ok = sum(_metric(text, "candlecast_signals_total", endpoint="signal", status="ok",
                     action=a) or 0 for a in ("long", "short", "flat"))
    assert ok >= 1
    assert _metric(text, "candlecast_request_errors_total", endpoint="signal", code="404",
                   field="symbol") >= 1
    fresh_age = _metric(text, "candlecast_feature_age_seconds", series_id=FRESH)
    stale_age = _metric(text, "candlecast_feature_age_seconds", series_id=STALE)
    assert 0 <= fresh_age < 1800 + 600
    assert stale_age > 365 * 86400
    assert _metric(text, "candlecast_model_info", model_version="candlecast-lightgbm/1",
                   source="fallback") == 1.0
    assert _metric(text, "candlecast_request_duration_seconds_count", endpoint="signal",
                   code="200") >= 1
    assert np.isfinite(_metric(text, "candlecast_request_duration_seconds_sum",
                               endpoint="signal", code="200"))


def test_no_payload_above_left_the_service_unhealthy(client):
    assert client.get("/readyz").status_code == 200
    assert copy.deepcopy(client.post("/signal", json=BTC).json())["status"] == "ok"


def _listening(port: int) -> set[str]:
    """Local addresses in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:  # noqa: PTH123
            for line in list(handle)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def test_the_service_binds_loopback_by_default(service):
    """Started without --host (see serving_harness.start_service): 127.0.0.1 only."""
    port = int(service.url.rsplit(":", 1)[1])
    assert _listening(port) == {"0100007F"}  # 127.0.0.1 in /proc's little-endian hex
