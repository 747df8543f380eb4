"""`candlecast trade run --feed stream` end to end, in real time: 1-second candles (real Bitfinex
prices re-stamped to end now) streamed as trades by the fake Binance WebSocket to the real
ccxt.pro client, signals over HTTP, Prometheus metrics scraped while it runs, then
`candlecast trade status` and the candle store."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_binance import serve  # noqa: E402
from fake_binance_orders import CCXT_SPOT_OPTIONS  # noqa: E402
from fake_binance_ws import FakeBinanceStream, FakeClock, ReplayedBinance  # noqa: E402
from stream_helpers import MARKETS, bundled  # noqa: E402
from trading_helpers import FakeSignalService, PolicyScript  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from candlecast.backtest import CostConfig  # noqa: E402
from candlecast.data.schema import SeriesId  # noqa: E402
from candlecast.data.store import CandleStore  # noqa: E402
from candlecast.policy import Policy, PolicyConfig  # noqa: E402
from candlecast.trading.cli import trade_app  # noqa: E402

HISTORY, STREAMED = 830, 60  # streamed from now on, one a second


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(180)
def test_trade_run_feed_stream_cli(tmp_path):
    frame = bundled(("BTC/USD",))["BTC/USD"].iloc[5000:5000 + HISTORY + STREAMED]
    now_s = int(time.time()) + 1
    first_ms = (now_s - HISTORY) * 1000  # candle i opens at first + i s; i = HISTORY opens now
    table = [[first_ms + 1000 * i, *map(float, row)] for i, row in enumerate(
        frame[["open", "high", "low", "close", "volume"]].itertuples(index=False))]
    clock = FakeClock(time.time(), speed=1.0)
    clock.run()
    rest_fake = ReplayedBinance(now_ms=first_ms, markets={"BTCUSD": MARKETS["BTCUSD"]},
                                max_limit=1000, tables={"BTCUSD": table}, clock=clock)
    # a policy that turns long and short every two candles (large forecasts, no minimum hold)
    policy = Policy(PolicyConfig(horizon=1, entry_margin=1.0, min_hold_bars=0, vol_target=None,
                                 allow_short=True), CostConfig(), 365 * 86_400.0)
    script = PolicyScript(policy, [row[0] * 1_000_000 for row in table],
                          [0.02 if i % 4 < 2 else -0.02 for i in range(len(table))],
                          [0.001] * len(table))
    port = _free_port()
    scraped: list[str] = []
    with serve(rest_fake) as rest, FakeSignalService(script, 1_000_000_000) as service:
        ws = FakeBinanceStream({"BTCUSD": table}, now_s * 1000, STREAMED, "1s", clock,
                               rest_fake).start()
        params = {"trade": {
            "exchange": "binance", "symbols": ["BTC/USD"], "timeframe": "1s",
            "feed": "stream", "service_url": service.url, "signal_endpoint": "predict",
            "predict_candles": 50, "signal_retries": 0, "exchange_api_url": rest.url,
            "exchange_rate_limit_ms": 1, "exchange_options": CCXT_SPOT_OPTIONS,
            "poll_interval_s": 0.05, "state_sync": "NORMAL", "write_features": False,
            "stream": {"kind": "trades", "ws_url": ws.url, "close_grace_s": 0.3,
                       "silence_s": 5.0, "watchdog_interval_s": 0.05, "store_flush_s": 0.2,
                       "reconnect_base_s": 0.05, "reconnect_max_s": 0.5}}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

        def scrape() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not finished.is_set():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                timeout=2) as answer:
                        scraped.append(answer.read().decode())
                except OSError:
                    pass
                time.sleep(0.5)

        finished = threading.Event()
        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        ws.play()  # from now: what is streamed before the trader subscribes, it gets over REST
        result = CliRunner().invoke(trade_app, ["run", "--root", str(tmp_path), "--max-candles",
                                                "6", "--metrics-port", str(port)])
        finished.set()
        ws.stop()
        scraper.join(5)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "max_ticks" and summary["ticks"] == 6
    assert service.requests and all(p == "/predict" for p, _ in service.requests)

    status = CliRunner().invoke(trade_app, ["status", "--root", str(tmp_path)])
    assert status.exit_code == 0, status.output
    state = json.loads(status.stdout)
    assert state["candles_processed"] == 6
    assert state["feed"]["state"] == "streaming", state["feed"]
    counts = state["event_counts"]
    assert counts["stream_subscribing"] == 1 and counts["stream_connected"] == 1
    assert "stream_silent" not in counts and "stale_data" not in counts

    stored = CandleStore(tmp_path / "data" / "raw").read(SeriesId("binance", "BTC/USD", "1s"))
    assert len(stored) == 6  # the traded candles, appended on the way out
    first = int(stored["timestamp"].iloc[0].value // 1_000_000)
    i = (first - first_ms) // 1000
    expected = pd.DataFrame(table[i:i + 6], columns=["ms", "open", "high", "low", "close",
                                                      "volume"])
    assert (stored["timestamp"].astype("int64") // 1_000_000).tolist() == expected["ms"].tolist()
    assert stored["close"].tolist() == expected["close"].tolist()
    assert stored["volume"].tolist() == expected["volume"].tolist()

    metrics = "\n".join(scraped)
    assert 'candlecast_feed_candles_total{source="stream"}' in metrics
    assert "candlecast_feed_stale 0.0" in metrics
    assert 'candlecast_trader_events_total{kind="stream_connected"}' in metrics
