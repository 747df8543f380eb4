"""The signal service down, slow, stale or misbehaving: the client's error mapping and the
target contract, and a trader that keeps its positions safe and decides nothing without a fresh
target."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from trading_helpers import (
    FakeSignalService,
    assert_same_fills,
    backtest_script,
    build_paper_trader,
    make_script,
    replay_slice,
    trader_fills,
)

from candlecast.backtest import CostConfig
from candlecast.data.schema import SeriesId
from candlecast.features import FeatureConfig
from candlecast.trading import HttpSignalClient, SignalUnavailable

SERIES = SeriesId("bitfinex", "BTC/USD", "30m")
STEP = int(SERIES.step.value)
STOPS = {"stop_loss", "chandelier_stop", "breakeven_stop", "trailing_stop"}
POLICY = {"horizon": 4, "entry_margin": 1.0, "exit_margin": 0.0, "min_hold_bars": 2,
          "vol_target": 0.5, "allow_short": True}


def _candles(n: int = 60) -> pd.DataFrame:
    ts = pd.date_range("2024-03-01", periods=n, freq="30min", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": 100.0, "high": 101.0, "low": 99.0,
                         "close": 100.5, "volume": 5.0})


def test_http_client_sends_the_position_and_maps_every_failure(btc_30m):
    candles = _candles()
    _, replay, feats = replay_slice(btc_30m, 6000, 60, FeatureConfig())
    script = make_script(replay, feats, btc_30m, 6000, **POLICY)
    last_open = int(candles["timestamp"].iloc[-1].value)
    script.index = {last_open: 59}  # the scripted forecast of the last test candle
    script.er[59], script.vol[59] = 0.05, 0.004  # a large edge: the policy goes long
    with FakeSignalService(script, STEP, delay_s=0.6) as service:
        client = HttpSignalClient(service.url, timeout=0.2)
        assert client.ready()
        sig = client.predict(SERIES, candles)
        assert sig.action == "long" and sig.status == "ok" and sig.reason == "enter_long"
        assert sig.target_position == pytest.approx(min(1.0, 0.5 / (0.004 * math.sqrt(17520))))
        assert sig.is_fresh(candles["timestamp"].iloc[-1] + SERIES.step)
        assert sig.execution == script.execution and sig.policy.horizon == 4
        assert sig.forecasts[4].expected_return == 0.05 and sig.volatility == 0.004
        path, body = service.requests[-1]
        assert path == "/predict" and body["symbol"] == "BTC/USD" and len(body["candles"]) == 60
        assert body["position"] == 0.0 and body["bars_held"] == 0
        assert body["candles"][-1]["timestamp"] == "2024-03-02T05:30:00Z"
        held = client.predict(SERIES, candles, position=0.3, bars_held=7)  # held and paying
        assert service.requests[-1][1]["position"] == 0.3
        assert service.requests[-1][1]["bars_held"] == 7
        assert held.reason in ("hold", "rebalance") and held.target_position > 0
        with pytest.raises(ValueError, match="finite"):
            client.predict(SERIES, candles, position=math.nan)
        service.mode = "stale"
        stale = client.predict(SERIES, candles)
        assert stale.status == "stale" and not stale.has_target
        service.mode = "no_target"  # a service older than the target contract
        assert not client.predict(SERIES, candles).has_target
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


def _outage_window(plain) -> tuple[int, int]:
    """A window that starts a few candles before a risk-engine stop-out, with no order decided
    just before it, in which the policy would have decided something."""
    d = plain.decisions
    decided = set(d.loc[d["action"] == "target", "bar"].tolist())
    stop_bars = plain.fills.loc[plain.fills["reason"].isin(STOPS), "bar"].to_numpy()
    for b in stop_bars:
        lo, hi = int(b) - 3, int(b) + 40
        if lo > 2 and hi < len(plain.equity) and not decided & {lo - 2, lo - 1} \
                and len(decided & set(range(b + 1, hi))) >= 2:
            return lo, hi
    raise AssertionError("no suitable outage window in this slice")


@pytest.mark.parametrize("failure", ["down", "stale"])
def test_outage_keeps_stops_and_decides_nothing(tmp_path, btc_30m, failure):
    start, n = 6000, 700
    full, replay, feats = replay_slice(btc_30m, start, n, FeatureConfig())
    script = make_script(replay, feats, btc_30m, start, seed=2, **POLICY)
    plain = backtest_script(replay, feats, script)
    lo, hi = _outage_window(plain)
    expected = backtest_script(replay, feats, script, held=range(lo, hi))
    slept: list[float] = []
    trader, signals, _, store = build_paper_trader(
        tmp_path, full, replay, script, sleep=slept.append,
        config={"signal_retries": 2, "signal_backoff_s": 0.1, "signal_backoff_max_s": 0.15})
    outage = set(pd.DatetimeIndex(replay["timestamp"].iloc[lo:hi]).asi8.tolist())
    getattr(signals, failure).update(outage)
    assert trader.run().status == "ended"

    fills = trader_fills(store)
    assert_same_fills(fills, expected.fills)  # = the backtest that keeps what is held there
    in_window = fills[(fills["ts"] >= min(outage)) & (fills["ts"] <= max(outage))]
    assert set(in_window["reason"]) & STOPS  # the stop was enforced during the outage
    decisions = store.frame("decisions")
    during = decisions[decisions["ts"].isin(outage)]
    assert not during["action"].isin(["target", "enter"]).any()  # nothing decided
    plain_during = plain.decisions[plain.decisions["bar"].between(lo, hi - 1)]
    assert (plain_during["action"] == "target").any()  # it mattered
    # retried with backoff, reported once per candle, recovered afterwards
    assert slept == [0.1, 0.15] * len(outage)
    assert signals.calls == n + 2 * len(outage)
    events = store.frame("events")
    assert (events["kind"] == "no_fresh_signal").sum() == len(outage)
    assert (events["kind"] == "signal_recovered").sum() == 1
    assert trader.account.signal_failures == 0
    bars = store.frame("bars")
    assert (bars["signal_status"] == "unavailable").sum() == len(outage)
    assert bars.loc[bars["ts"].isin(outage), "target_position"].isna().all()


def test_slow_or_old_service_blocks_decisions_then_predict_path_trades(tmp_path, btc_30m):
    """Over real HTTP with the ``predict`` endpoint: while the service is too slow, or answers
    without a target (older than the contract), nothing is decided; once it answers, the
    trader matches the backtester from that point on."""
    start, n = 6000, 300
    full, replay, feats = replay_slice(btc_30m, start, n, FeatureConfig())
    script = make_script(replay, feats, btc_30m, start, **POLICY)
    costs = CostConfig()
    with FakeSignalService(script, STEP, delay_s=0.3) as service:
        client = HttpSignalClient(service.url, timeout=0.1)
        trader, _, _, store = build_paper_trader(
            tmp_path, full, replay, script, signals=client, costs=costs,
            config={"signal_endpoint": "predict", "predict_candles": 120})
        service.mode = "slow"
        assert trader.run(max_ticks=3).status == "max_ticks"
        assert trader.books["BTC/USD"].pos == 0.0 and not trader.books["BTC/USD"].pending
        service.mode = "no_target"
        trader.run(max_ticks=2)
        assert trader.books["BTC/USD"].pos == 0.0 and not trader.books["BTC/USD"].pending
        service.mode = "ok"
        trader.run()
    expected = backtest_script(replay, feats, script, costs=costs, held=range(5))
    assert len(expected.fills) > 4
    assert_same_fills(trader_fills(store), expected.fills)
    bars = store.frame("bars")
    assert list(bars["signal_status"].iloc[:5]) == ["unavailable"] * 3 + ["no_target"] * 2
    assert (store.frame("events")["kind"] == "no_target").sum() == 2
    body = service.requests[-1][1]
    assert len(body["candles"]) == 120  # the configured window, primed history included
    stamps = [c["timestamp"] for c in body["candles"]]
    assert stamps == sorted(stamps) and stamps[-1].endswith("Z")
    positions = np.array([b["position"] for _, b in service.requests if "position" in b])
    assert (positions != 0).any()
