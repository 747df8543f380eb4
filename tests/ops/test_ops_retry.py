"""Which failures the ops flows' tasks retry (``flows/ops.py``: ``retry_condition_fn``)."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys

import httpx
import pytest

from candlecast.exchange.errors import (
    PermanentExchangeError,
    RetriesExhaustedError,
    TransientExchangeError,
)


@pytest.fixture(scope="module")
def ops_flows(repo_root):  # noqa: ANN001, ANN201
    spec = importlib.util.spec_from_file_location("candlecast_ops_flows_retry",
                                                  repo_root / "flows" / "ops.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_transient_failures_are_retried_and_the_rest_are_not(ops_flows):
    timeout = TransientExchangeError("bitfinex", "timeout", "read timed out")
    transient = [timeout, RetriesExhaustedError("fetch_ohlcv", 5, timeout),
                 ConnectionError("refused"), TimeoutError(), sqlite3.OperationalError("locked"),
                 httpx.ConnectTimeout("slow"), httpx.ReadError("reset")]
    for exc in transient:
        assert ops_flows._transient(exc), exc
    for exc in (PermanentExchangeError("bitfinex", "bad symbol"), ValueError("bad params"),
                KeyError("column"), httpx.HTTPStatusError(
                    "404", request=httpx.Request("GET", "http://x"), response=httpx.Response(404))):
        assert not ops_flows._transient(exc), exc
