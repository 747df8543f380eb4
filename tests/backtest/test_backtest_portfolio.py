"""The portfolio backtester: one account over several coins on one time axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.backtest import BacktestConfig, CostConfig, prepare_market
from candlecast.backtest.portfolio import TargetWeights, run_portfolio
from candlecast.backtest.targets import run_targets
from candlecast.features import compute_features
from candlecast.policy import Policy, PolicyConfig, PolicyDecider
from candlecast.risk import RiskConfig
from candlecast.risk.config import LimitsConfig, SizingConfig


def _coin(candle_factory, n: int, seed: int, symbol: str, drop: slice | None = None):
    frame = candle_factory(n, seed=seed, timeframe="30m", symbol=symbol)
    if drop is not None:
        frame = frame.drop(index=frame.index[drop]).reset_index(drop=True)
    return frame


class _OneCoin:
    """The policy's decider asked through the portfolio interface (one coin)."""

    def __init__(self, symbol: str, inner: PolicyDecider) -> None:
        self.symbol, self.inner = symbol, inner

    def decide(self, bar, ts_ns, weights, bars_held, tradable):
        target, reason, _ = self.inner.decide(bar, weights[self.symbol],
                                              bars_held[self.symbol])
        return {self.symbol: target}, reason


def test_one_coin_portfolio_equals_the_target_backtester(btc_30m):
    """With one coin the portfolio loop is run_targets: the same fills, decisions and equity
    (real BTC candles, the default risk engine and costs, a long/short vol-targeted policy)."""
    candles = btc_30m.iloc[8000:9500].reset_index(drop=True)
    feats = compute_features(candles)
    close = candles["close"].to_numpy()
    rng = np.random.default_rng(4)
    fwd = np.append(np.log(close[4:] / close[:-4]), np.zeros(4))
    er = (fwd + rng.normal(0, 1.5 * fwd.std(), len(fwd))) / 3.25
    policy = Policy(PolicyConfig(horizon=4, entry_margin=1.0, exit_margin=0.0, allow_short=True),
                    CostConfig(), 17_520.0)
    vol = feats["rv_48"].to_numpy()
    risk, costs = RiskConfig(), CostConfig()
    single = run_targets(candles, PolicyDecider(policy, er, vol), risk, costs, BacktestConfig(),
                         policy.config.execution, atr=feats["atr"].to_numpy())
    market = prepare_market(candles)
    book = run_portfolio({"BTC/USD": market}, _OneCoin("BTC/USD", PolicyDecider(policy, er, vol)),
                         risk, costs, BacktestConfig(), policy.config.execution,
                         atr={"BTC/USD": feats["atr"].to_numpy()})
    assert len(single.fills) > 20
    np.testing.assert_allclose(book.equity, single.equity, rtol=1e-12)
    fills = book.fills
    for col in ("bar", "side", "qty", "price", "fee"):
        np.testing.assert_allclose(fills[col].to_numpy(dtype=float),
                                   single.fills[col].to_numpy(dtype=float), rtol=1e-12)
    assert list(fills["reason"]) == list(single.fills["reason"])
    mine = book.decisions
    assert list(mine["action"]) == list(single.decisions["action"])
    assert list(mine["reason"]) == list(single.decisions["reason"])


def test_a_coin_without_a_bar_is_never_traded_on_it(candle_factory):
    """Coin B misses 40 bars (and is listed 100 bars late): no fill, no decision and no order
    for B at those times; the book marks B at its last real close there."""
    a = _coin(candle_factory, 600, 1, "AAA/USD")
    b = _coin(candle_factory, 600, 2, "BBB/USD", drop=slice(300, 340))
    b = b.iloc[100:].reset_index(drop=True)
    markets = {"AAA/USD": prepare_market(a), "BBB/USD": prepare_market(b)}
    n = len(a)
    weights = np.zeros((n, 2))
    weights[:, 0] = np.where(np.arange(n) % 2 == 0, 0.3, 0.5)  # a change at every bar
    weights[:, 1] = np.where(np.arange(n) % 2 == 0, 0.5, 0.2)
    result = run_portfolio(markets, TargetWeights(list(markets), weights), None, CostConfig(),
                           BacktestConfig())
    b_times = set(pd.DatetimeIndex(b["timestamp"]))
    fills = result.fills
    traded_b = fills[fills["symbol"] == "BBB/USD"]
    assert len(traded_b) > 100
    assert set(traded_b["timestamp"]) <= b_times
    decided_b = result.decisions[result.decisions["symbol"] == "BBB/USD"]
    assert set(decided_b["timestamp"]) <= b_times and len(decided_b) > 100
    gap = ~result.present[:, 1]
    assert gap.sum() == 140  # not listed yet (100) + the hole (40)
    hole = np.flatnonzero(gap)[100:]
    assert (result.marks[hole, 1] == result.marks[hole[0] - 1, 1]).all()  # last real close
    assert (result.positions[hole, 1] == result.positions[hole[0] - 1, 1]).all()
    # one account: equity = cash from the fills of both coins + positions at their last close
    cash = 10_000.0 - (fills["side"] * fills["qty"] * fills["price"] + fills["fee"]).sum()
    last = result.positions[-1] * result.marks[-1]
    assert result.final_equity == pytest.approx(cash + last.sum(), rel=1e-12)
    contributions = result.contributions()
    assert sum(contributions.values()) == pytest.approx(result.final_equity - 10_000.0,
                                                        rel=1e-9)


def test_book_level_caps_and_halts_apply_to_the_account(candle_factory):
    """The risk engine sees one account: a gross-exposure cap shared by the coins, and a
    drawdown halt that closes every coin when the book (not one coin) falls."""
    a = _coin(candle_factory, 300, 3, "AAA/USD")
    b = _coin(candle_factory, 300, 4, "BBB/USD")
    crash = b.copy()
    crash.loc[150:, ["open", "high", "low", "close"]] *= 0.5  # BBB halves at bar 150
    crash.loc[150, "open"] = crash.loc[149, "close"]
    crash.loc[150, "high"] = max(crash.loc[150, "high"], crash.loc[150, "open"])
    weights = np.tile([0.45, 0.7], (300, 1))
    risk = RiskConfig(
        sizing=SizingConfig(method="fixed_notional", max_gross_exposure=1.0),
        exits={"stop_atr_multiple": None, "chandelier_atr_multiple": None,
               "breakeven_trigger_r": None},
        limits=LimitsConfig(max_concurrent_positions=5, max_drawdown=0.2, max_daily_loss=None))
    markets = {"AAA/USD": prepare_market(a), "BBB/USD": prepare_market(crash)}
    costs = CostConfig(max_participation=None)
    result = run_portfolio(markets, TargetWeights(list(markets), weights), risk, costs,
                           BacktestConfig())
    # 0.45 + 0.7 asked: the second coin's entry is capped at the book's room (1.0 gross at the
    # entry prices); prices drift after that
    capped = result.decisions[result.decisions["notes"].str.contains("capped_gross_exposure")]
    assert len(capped) > 0
    assert result.gross[1] == pytest.approx(1.0, abs=0.02)
    assert result.gross[1:149].min() > 0.9 and result.gross[1:149].max() < 1.1
    halts = result.decisions[result.decisions["action"] == "halt"]
    assert list(halts["reason"]) == ["halt_max_drawdown"]
    after = int(halts["bar"].iloc[0]) + 2
    assert (result.positions[after:] == 0).all()  # both coins closed, no re-entry
    exits = result.decisions[(result.decisions["action"] == "exit")
                             & (result.decisions["reason"] == "halt_max_drawdown")]
    assert set(exits["symbol"]) == {"AAA/USD", "BBB/USD"}
