"""CcxtIngestConfig: defaults, validation, and one-line errors."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from candlecast.data.ingest import CcxtIngestConfig, IngestError, ingest_config


def test_defaults_and_parsed_times() -> None:
    config = CcxtIngestConfig(exchange="binance", symbols=["BTC/USDT"], since="2024-01-01")
    assert config.symbols == ("BTC/USDT",)
    assert config.timeframe == "1h" and config.until is None and config.page_limit is None
    assert (config.max_retries, config.backoff_base_s, config.backoff_max_s) == (5, 0.5, 30.0)
    assert config.timeout_ms == 10_000 and config.rate_limit_ms is None and config.resume
    assert config.since_ts == pd.Timestamp("2024-01-01", tz="UTC")
    offset = CcxtIngestConfig(
        exchange="binance", symbols=["BTC/USDT"], since="2024-01-01T02:00+02:00"
    )
    assert offset.since_ts == pd.Timestamp("2024-01-01", tz="UTC")


def test_frozen_and_no_extra_fields() -> None:
    config = CcxtIngestConfig(exchange="binance", symbols=["BTC/USDT"])
    with pytest.raises(ValidationError):
        config.timeframe = "1d"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="apiKey"):
        CcxtIngestConfig(exchange="binance", symbols=["BTC/USDT"], apiKey="k")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"exchange": "Binance"}, r"exchange: String should match pattern"),
        ({"symbols": []}, r"symbols: .*at least 1"),
        (
            {"symbols": ["BTCUSDT"]},
            r"symbols: Value error, symbol 'BTCUSDT' must be a ccxt unified",
        ),
        ({"symbols": ["BTC/USDT", "BTC/USDT"]}, r"listed more than once: \['BTC/USDT'\]"),
        ({"timeframe": "1M"}, r"timeframe: Value error, timeframe '1M' is not supported"),
        ({"since": "yesterday-ish"}, r"since: Value error, since 'yesterday-ish' is not an ISO"),
        ({"since": "2024-02-01", "until": "2024-02-01"}, r"since \(2024-02-01\) must be before"),
        ({"max_retries": -1}, r"max_retries: Input should be greater than or equal to 0"),
        ({"backoff_base_s": 10, "backoff_max_s": 1}, r"backoff_base_s \(10.0\) must not exceed"),
        ({"timeout_ms": 5}, r"timeout_ms: Input should be greater than or equal to 100"),
    ],
)
def test_invalid_fields_give_one_line_ingest_errors(fields, pattern) -> None:
    base = {"exchange": "binance", "symbols": ["BTC/USDT"]}
    with pytest.raises(IngestError, match=pattern) as caught:
        ingest_config(**{**base, **fields})
    assert str(caught.value).startswith("invalid ccxt ingest config: ")
    assert "\n" not in str(caught.value)
