"""A real crash: SIGKILL an ingest process mid-download, then re-run to completion.

The ingest runs in a forked child (it inherits the already-imported ccxt and pandas, so this costs
no import time) and is killed with SIGKILL while the fake exchange holds one of its requests.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

FAKES = Path(__file__).resolve().parents[1] / "fakes"
sys.path.insert(0, str(FAKES))
from fake_binance import Fault  # noqa: E402
from ingest_helpers import LISTING, NOW, fake_exchange_fixture, fast_config, tree_digest  # noqa: E402, F401

from candlecast.data.ingest import ingest_ccxt, ingest_config  # noqa: E402
from candlecast.data.schema import SeriesId, conform  # noqa: E402
from candlecast.data.store import CandleStore  # noqa: E402


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")
def test_sigkill_mid_ingest_then_rerun_has_no_gaps_or_duplicates(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path / "store")
    symbols = ["BTC/USDT", "ETH/USDT"]
    config = ingest_config(**fast_config(symbols=symbols, until="2024-01-10"))
    ingest_ccxt(config, store, api_url=server.url, now=NOW)
    before = tree_digest(store.root)

    already = len(fake.klines_requests())
    # The re-run needs 18 pages per symbol; hang on ETH's 5th: BTC is fully downloaded by then.
    fake.faults[already + 18 + 4] = Fault("hang")
    child_config = ingest_config(**fast_config(symbols=symbols, since=None, timeout_ms=60_000))
    pid = os.fork()
    if pid == 0:  # the child: ingest until killed; never return into pytest
        try:
            ingest_ccxt(child_config, store, api_url=server.url, now=NOW)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 30
        while not any(r.fault == "hang" for r in fake.requests):
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), "child exited before the hang"
            assert time.monotonic() < deadline, "child never reached the hanging page"
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert tree_digest(store.root) == before  # killed mid-download: nothing was written

    report = ingest_ccxt(
        ingest_config(**fast_config(symbols=symbols, since=None)),
        store,
        api_url=server.url,
        now=NOW,
    )
    assert [s.new_rows for s in report.series] == [2000 - 9 * 24] * 2
    for symbol in symbols:
        got = store.read(SeriesId("binance", symbol, "1h"))
        pd.testing.assert_frame_equal(got, conform(fake.expected(symbol, "1h", LISTING, NOW)))
