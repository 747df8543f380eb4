"""Shared helpers and fixtures for the ingest and exchange tests (import, do not collect).

Usage in a test module::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
    from ingest_helpers import NOW, fake_exchange_fixture  # noqa: F401  (fixture by import)

and request the fixture as ``fake_exchange``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fake_binance import DEFAULT_LISTING_MS, FakeBinance, FakeServer

LISTING = pd.Timestamp(DEFAULT_LISTING_MS, unit="ms", tz="UTC")  # 2024-01-01 00:00 UTC
# 2,000 closed hourly candles after LISTING, then the still-open one (opened 2024-03-24 08:00).
NOW = LISTING + pd.Timedelta(hours=2000, minutes=30)
NOW_MS = int(NOW.value // 1_000_000)
HOUR_MS = 3_600_000


class RecordingSleep:
    """An injectable ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (and '<dir>' for every folder)."""
    if not root.exists():
        return {}
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(name="fake_exchange")
def fake_exchange_fixture() -> Iterator[tuple[FakeBinance, FakeServer]]:
    """A fresh fake Binance (clock at NOW, 100 candles per page max) served on 127.0.0.1."""
    fake = FakeBinance(now_ms=NOW_MS)
    with FakeServer(fake) as server:
        yield fake, server


def fast_config(**overrides: object) -> dict[str, object]:
    """Config fields for ingesting from the fake quickly (tiny rate limit and timeout)."""
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "timeframe": "1h",
        "since": "2024-01-01",
        "timeout_ms": 250,
        "rate_limit_ms": 1,
        "max_retries": 3,
        "backoff_base_s": 0.1,
        "backoff_max_s": 5.0,
    }
    fields.update(overrides)
    return fields
