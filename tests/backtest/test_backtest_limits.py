"""Limits halt trading inside a backtest: the engine's decisions, recorded, never exceptions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.backtest import CostConfig, run_event_driven
from candlecast.risk import ExitConfig, LimitsConfig, RiskConfig, SizingConfig

NO_EXITS = ExitConfig(stop_atr_multiple=None, chandelier_atr_multiple=None,
                      breakeven_trigger_r=None)
ALL_IN = SizingConfig(method="fixed_notional")


def hourly(close, start="2024-03-04 00:00"):
    close = np.asarray(close, dtype=float)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({
        "timestamp": pd.date_range(start, periods=len(close), freq="1h", tz="UTC"),
        "open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close),
        "close": close, "volume": 1e9, "symbol": "TST/USD", "timeframe": "1h"})


def toggling(n, period=4):
    """Enter and exit every ``period`` bars: plenty of entry requests."""
    return np.where((np.arange(n) // period) % 2 == 0, 1, 0)


def test_daily_loss_halts_until_the_next_utc_day():
    n = 72
    close = np.full(n, 100.0)
    close[3:] = 90.0  # -10 % on day one's 4th bar while long
    close[30:] = np.linspace(90, 95, n - 30)
    risk = RiskConfig(sizing=ALL_IN, exits=NO_EXITS,
                      limits=LimitsConfig(max_daily_loss=0.05, max_drawdown=None,
                                          drawdown_scale_start=None, drawdown_scale_end=None,
                                          max_trades_per_day=None))
    res = run_event_driven(hourly(close), toggling(n), risk, CostConfig.zero())
    d = res.decisions
    halt = d[(d["reason"] == "halt_daily_loss") & (d["action"] == "halt")]
    assert halt["timestamp"].tolist() == [pd.Timestamp("2024-03-04 03:00", tz="UTC")]
    assert d[(d["reason"] == "halt_daily_loss") & (d["action"] == "exit")].shape[0] == 1
    rejected = d[d["reason"] == "reject_daily_loss_halt"]["timestamp"]
    assert len(rejected) > 0 and (rejected.dt.day == 4).all()
    entries = d[d["action"] == "enter"]["timestamp"]
    later = entries[entries > halt["timestamp"].iloc[0]]
    assert later.iloc[0] == pd.Timestamp("2024-03-05 00:00", tz="UTC")  # first bar of day 2
    fills = res.fills
    assert (fills["timestamp"].dt.day == 4).sum() == 2  # the entry and the forced exit


def test_drawdown_halt_stops_new_entries_for_good():
    n = 200
    close = np.concatenate([np.linspace(100, 30, 60), np.linspace(30, 150, n - 60)])
    risk = RiskConfig(sizing=ALL_IN, exits=NO_EXITS,
                      limits=LimitsConfig(max_drawdown=0.25, max_daily_loss=None,
                                          drawdown_scale_start=None, drawdown_scale_end=None,
                                          max_trades_per_day=None))
    res = run_event_driven(hourly(close), toggling(n), risk, CostConfig.commission_only(10))
    d = res.decisions
    halt_bar = d.loc[(d["reason"] == "halt_max_drawdown") & (d["action"] == "halt"), "bar"]
    assert len(halt_bar) == 1
    assert (d.loc[d["bar"] > halt_bar.iloc[0], "action"] != "enter").all()
    assert (d["reason"] == "reject_drawdown_halt").sum() > 10
    assert res.position[halt_bar.iloc[0] + 1:].max() == 0  # flat after the forced exit
    assert res.equity[-1] == res.equity[halt_bar.iloc[0] + 1]  # missed the whole recovery


def test_kill_switch_exits_and_blocks_everything_after():
    n = 100
    close = 100 + np.sin(np.arange(n) / 3.0)
    risk = RiskConfig(sizing=ALL_IN, exits=NO_EXITS)
    c = hourly(close)
    kill_at = c["timestamp"].iloc[41]
    sig = np.ones(n, dtype=int)
    res = run_event_driven(c, sig, risk, CostConfig.zero(), kill_at=kill_at)
    d = res.decisions
    assert d.loc[d["reason"] == "kill_switch", "bar"].tolist() == [41]
    assert res.fills["bar"].tolist() == [1, 42]  # in at the start, out right after the kill
    res2 = run_event_driven(c, toggling(n), risk, CostConfig.zero(), kill_at=kill_at)
    late = res2.decisions[res2.decisions["bar"] > 41]
    assert set(late["reason"]) == {"reject_kill_switch"}
    assert res2.position[42:].max() == 0


def test_max_trades_per_day_and_cooldown_in_a_backtest(candle_factory):
    c = candle_factory(24 * 6, seed=2, start="2024-03-04")
    sig = toggling(len(c), period=1)  # asks for an entry every other bar
    risk = RiskConfig(sizing=ALL_IN, exits=NO_EXITS,
                      limits=LimitsConfig(max_trades_per_day=3, max_daily_loss=None,
                                          max_drawdown=None))
    res = run_event_driven(c, sig, risk, CostConfig.zero())
    entries = res.fills[res.fills["reason"] == "signal_entry"]
    assert entries.groupby(entries["timestamp"].dt.date).size().max() == 3
    assert (res.decisions["reason"] == "reject_max_trades_per_day").sum() > 0


def test_reentry_after_a_stop_out_only_with_reenter():
    from candlecast.backtest import BacktestConfig

    close = np.array([100, 100, 100, 90, 91, 92, 93, 94, 95, 96.0])
    c = hourly(close)
    risk = RiskConfig(sizing=ALL_IN,
                      exits=ExitConfig(stop_loss_pct=0.05, stop_atr_multiple=None,
                                       chandelier_atr_multiple=None, breakeven_trigger_r=None),
                      limits=LimitsConfig(max_daily_loss=None, max_drawdown=None))
    sig = np.ones(len(close), dtype=int)
    once = run_event_driven(c, sig, risk, CostConfig.zero())
    again = run_event_driven(c, sig, risk, CostConfig.zero(), BacktestConfig(reenter=True))
    assert once.trades["exit_reason"].tolist() == ["stop_loss"]  # out at bar 3, stays out
    assert again.trades["entry_bar"].tolist() == [1, 4]  # back in at the next open
    assert again.trades["exit_reason"].tolist() == ["stop_loss", "open"]
