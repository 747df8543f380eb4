"""Request schemas and the error shape (pure, no server)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from candlecast.serving.schemas import (
    PredictRequest,
    RequestError,
    SeriesRequest,
    field_path,
    request_error,
)


def _candles(n: int = 3) -> list[dict]:
    return [
        {"timestamp": f"2019-09-30T{10 + i:02d}:00:00Z", "open": 100.0 + i, "high": 102.0 + i,
         "low": 99.0 + i, "close": 101.0 + i, "volume": 5.0}
        for i in range(n)
    ]


def _body(**changes) -> dict:
    return {"exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "30m",
            "candles": _candles(), **changes}


def _error(raw: str | bytes, model=PredictRequest) -> RequestError:  # noqa: ANN001
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(raw)
    return request_error(caught.value)


def test_valid_request_parses_and_normalises_to_utc():
    body = _body()
    body["candles"][1]["timestamp"] = "2019-09-30T13:00:00+02:00"  # 11:00 UTC
    request = PredictRequest.model_validate_json(json.dumps(body))
    assert request.series_id == "bitfinex:BTC/USD:30m"
    assert request.candles[1].timestamp.isoformat() == "2019-09-30T11:00:00+00:00"
    assert request.candles[0].open == 100.0


@pytest.mark.parametrize(("index", "key", "value", "field"), [
    (1, "close", "NaN", "candles[1].close"),
    (1, "close", "Infinity", "candles[1].close"),
    (0, "open", "0", "candles[0].open"),
    (2, "low", "-1", "candles[2].low"),
    (2, "volume", "-0.5", "candles[2].volume"),
    (1, "high", '"101"', "candles[1].high"),
    (1, "volume", "true", "candles[1].volume"),
    (1, "high", "99.5", "candles[1].high"),  # below open and close
    (1, "low", "102.5", "candles[1].low"),  # above open and close, below high
    (0, "timestamp", '"2019-09-30T10:00:00"', "candles[0].timestamp"),  # naive
    (0, "timestamp", "1569837600", "candles[0].timestamp"),  # epoch seconds: not ISO 8601
    (0, "timestamp", '"1677-01-01T00:00:00Z"', "candles[0].timestamp"),  # out of range
    (0, "close", "1e400", "candles[0].close"),
])
def test_bad_values_name_the_field(index, key, value, field):
    body = _body()
    text = json.dumps(body)
    candle_text = json.dumps(body["candles"][index])
    bad = json.loads(candle_text)
    bad[key] = "__BAD__"
    text = text.replace(candle_text, json.dumps(bad).replace('"__BAD__"', value), 1)
    err = _error(text)
    assert (err.status, err.field) == (422, field)
    assert err.message.startswith(field)


def test_order_and_duplicates_name_the_later_candle():
    body = _body()
    body["candles"][2]["timestamp"] = body["candles"][1]["timestamp"]
    err = _error(json.dumps(body))
    assert err.field == "candles[2].timestamp" and "duplicates" in err.message
    body = _body()
    body["candles"][1], body["candles"][2] = body["candles"][2], body["candles"][1]
    err = _error(json.dumps(body))
    assert err.field == "candles[2].timestamp" and "before" in err.message


@pytest.mark.parametrize(("raw", "status", "field"), [
    (b"{", 400, "body"),
    (b"", 400, "body"),
    (b"[]", 422, "body"),
    (b'"text"', 422, "body"),
    (json.dumps({"exchange": "bitfinex", "symbol": "BTC/USD"}).encode(), 422, "timeframe"),
    (json.dumps({"exchange": "bitfinex", "symbol": "BTC-USD", "timeframe": "30m"}).encode(),
     422, "symbol"),
    (json.dumps({"exchange": "BITFINEX", "symbol": "BTC/USD", "timeframe": "30m"}).encode(),
     422, "exchange"),
    (json.dumps({"exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "1M"}).encode(),
     422, "timeframe"),
    (json.dumps({"exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "30m",
                 "price": 1}).encode(), 422, "price"),
])
def test_series_request_errors(raw, status, field):
    err = _error(raw, SeriesRequest)
    assert (err.status, err.field) == (status, field)
    assert err.body() == {"error": err.message, "field": field}


def test_empty_candle_list_is_refused():
    assert _error(json.dumps(_body(candles=[]))).field == "candles"


def test_field_path():
    assert field_path(("candles", 3, "close")) == "candles[3].close"
    assert field_path(("symbol",)) == "symbol"
    assert field_path(()) == "body"
