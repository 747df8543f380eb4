"""Fixtures of the serving tests: one real environment (MLflow + Feast) and ONE `bentoml serve`
process per test run, shared by pytest-xdist workers through a file lock in the run's temp
folder (``serving_harness.acquire_stack``), so any ``-n``/``--dist`` mode starts one service.

The service is started first and the stores are built while it imports (it retries loading
every second until they appear): the two slow parts overlap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from serving_harness import RunningService, ServingEnv, acquire_stack, release_stack

from candlecast.data.sample import load_sample

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def eth_30m() -> pd.DataFrame:
    return load_sample(REPO_ROOT / "data" / "sample", "bitfinex_30m", "ETH/USD")


@pytest.fixture(scope="session")
def serving_stack(tmp_path_factory, btc_30m, eth_30m
                  ) -> Iterator[tuple[ServingEnv, RunningService]]:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this run
    env, running = acquire_stack(base, REPO_ROOT / "bentos", btc_30m, eth_30m)
    try:
        yield env, running
    finally:
        release_stack(base, running)


@pytest.fixture(scope="session")
def serving_env(serving_stack) -> ServingEnv:
    return serving_stack[0]


@pytest.fixture(scope="session")
def service(serving_stack) -> RunningService:
    return serving_stack[1]


@pytest.fixture(scope="session")
def client(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http
