"""The signal service down, slow, stale or misbehaving: the client's error mapping, and a trader
that keeps its positions safe and opens nothing without a fresh signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trading_helpers import (
    FakeSignalService,
    assert_same_fills,
    build_paper_trader,
    replay_slice,
    sma_actions,
    trader_fills,
)

from candlecast.backtest import BacktestConfig, CostConfig, run_event_driven
from candlecast.data.schema import SeriesId
from candlecast.features import FeatureConfig
from candlecast.risk import RiskConfig
from candlecast.trading import HttpSignalClient, SignalUnavailable

SERIES = SeriesId("bitfinex", "BTC/USD", "30m")
STEP = int(SERIES.step.value)
STOPS = {"stop_loss", "chandelier_stop", "breakeven_stop", "trailing_stop"}


def _candles(n: int = 60) -> pd.DataFrame:
    ts = pd.date_range("2024-03-01", periods=n, freq="30min", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": 100.0, "high": 101.0, "low": 99.0,
                         "close": 100.5, "volume": 5.0})


def test_http_client_maps_every_failure():
    candles = _candles()
    last_open = int(candles["timestamp"].iloc[-1].value)
    with FakeSignalService({last_open: 1}, STEP, delay_s=0.6) as service:
        client = HttpSignalClient(service.url, timeout=0.2)
        assert client.ready()
        sig = client.predict(SERIES, candles)
        assert sig.action == "long" and sig.status == "ok"
        assert sig.is_fresh(candles["timestamp"].iloc[-1] + SERIES.step)
        path, body = service.requests[-1]
        assert path == "/predict" and body["symbol"] == "BTC/USD" and len(body["candles"]) == 60
        assert body["candles"][-1]["timestamp"] == "2024-03-02T05:30:00Z"
        service.mode = "stale"
        assert client.predict(SERIES, candles).status == "stale"
        for mode, kind in (("error500", "server_error"), ("error400", "bad_request"),
                           ("slow", "timeout"), ("garbage", "malformed")):
            service.mode = mode
            with pytest.raises(SignalUnavailable) as info:
                client.predict(SERIES, candles)
            assert info.value.kind == kind, mode
        url = service.url
    closed = HttpSignalClient(url, timeout=0.2)  # nothing listens there any more
    assert not closed.ready()
    with pytest.raises(SignalUnavailable) as info:
        closed.signal(SERIES)
    assert info.value.kind == "connection"


def _outage_window(bt, actions: np.ndarray) -> tuple[int, int]:
    """A window that starts a few candles before a risk-engine stop-out, while the signal is
    steady, and in which the signal later changes (the trader would have acted on it)."""
    stop_bars = bt.fills.loc[bt.fills["reason"].isin(STOPS), "bar"].to_numpy()
    for b in stop_bars:
        lo, hi = int(b) - 3, int(b) + 40
        if lo > 0 and hi < len(actions) and len(set(actions[lo - 1:b + 1])) == 1 \
                and len(set(actions[b:hi])) > 1:
            return lo, hi
    raise AssertionError("no suitable outage window in this slice")


@pytest.mark.parametrize("failure", ["down", "stale"])
def test_outage_keeps_stops_and_opens_nothing(tmp_path, btc_30m, failure):
    start, n = 6000, 700
    full, replay, feats = replay_slice(btc_30m, start, n, FeatureConfig())
    actions = sma_actions(btc_30m, start, n)
    atr = feats["atr"].to_numpy()
    plain = run_event_driven(replay, actions, RiskConfig(), CostConfig(), BacktestConfig(),
                             atr=atr)
    lo, hi = _outage_window(plain, actions)
    held = actions.copy()
    held[lo:hi] = actions[lo - 1]  # what the trader may know: the last fresh signal
    expected = run_event_driven(replay, held, RiskConfig(), CostConfig(), BacktestConfig(),
                                atr=atr)
    slept: list[float] = []
    trader, signals, _, store = build_paper_trader(
        tmp_path, full, replay, actions, sleep=slept.append,
        config={"signal_retries": 2, "signal_backoff_s": 0.1, "signal_backoff_max_s": 0.15})
    outage = set(pd.DatetimeIndex(replay["timestamp"].iloc[lo:hi]).asi8.tolist())
    getattr(signals, failure).update(outage)
    assert trader.run().status == "ended"

    fills = trader_fills(store)
    assert_same_fills(fills, expected.fills)  # = the backtest on the held signal
    in_window = fills[(fills["ts"] >= min(outage)) & (fills["ts"] <= max(outage) + STEP)]
    assert set(in_window["reason"]) & STOPS  # the stop was enforced during the outage
    assert not in_window["reason"].isin(["signal_entry", "signal_reverse"]).any()
    plain_in = plain.fills[(plain.fills["bar"] > lo) & (plain.fills["bar"] <= hi)]
    assert plain_in["reason"].isin(["signal_entry", "signal_reverse"]).any()  # it mattered
    # retried with backoff, reported once per candle, recovered afterwards
    assert slept == [0.1, 0.15] * len(outage)
    assert signals.calls == n + 2 * len(outage)
    events = store.frame("events")
    assert (events["kind"] == "no_fresh_signal").sum() == len(outage)
    assert (events["kind"] == "signal_recovered").sum() == 1
    assert trader.account.signal_failures == 0
    bars = store.frame("bars")
    assert (bars["signal_status"] == "unavailable").sum() == len(outage)


def test_slow_http_service_blocks_entries_then_predict_path_trades(tmp_path, btc_30m):
    """Over real HTTP with the ``predict`` endpoint: while the service is too slow nothing is
    opened; once it answers, the trader matches the backtester from that point on."""
    start, n = 6000, 300
    full, replay, feats = replay_slice(btc_30m, start, n, FeatureConfig())
    actions = sma_actions(btc_30m, start, n)
    ts = pd.DatetimeIndex(replay["timestamp"]).asi8
    costs = CostConfig()
    with FakeSignalService(dict(zip(ts.tolist(), actions.tolist(), strict=True)), STEP,
                           delay_s=0.3) as service:
        client = HttpSignalClient(service.url, timeout=0.1)
        trader, _, _, store = build_paper_trader(
            tmp_path, full, replay, actions, signals=client, costs=costs,
            config={"signal_endpoint": "predict", "predict_candles": 120})
        service.mode = "slow"
        assert trader.run(max_ticks=3).status == "max_ticks"
        assert trader.books["BTC/USD"].pos == 0.0 and not trader.books["BTC/USD"].pending
        service.mode = "ok"
        trader.run()
    held = actions.copy()
    held[:3] = 0
    expected = run_event_driven(replay, held, RiskConfig(), costs, BacktestConfig(),
                                atr=feats["atr"].to_numpy())
    assert len(expected.fills) > 4
    assert_same_fills(trader_fills(store), expected.fills)
    body = service.requests[-1][1]
    assert len(body["candles"]) == 120  # the configured window, primed history included
    stamps = [c["timestamp"] for c in body["candles"]]
    assert stamps == sorted(stamps) and stamps[-1].endswith("Z")
