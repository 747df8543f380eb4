"""The trader in portfolio mode: one book of several coins, one /portfolio answer per candle.

Parity: replaying real candles of three coins (with their real gaps) through the paper trader
gives the portfolio backtester's fills, decisions and equity; the trader reports to the
service exactly the weights and bars held the backtester's decider is given. And live: a
coin's refused order leaves a partly rebalanced book that is journalled and alerted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from trading_helpers import MemorySink, assert_same_fills, trader_fills

from candlecast.backtest import BacktestConfig, CostConfig, prepare_market
from candlecast.backtest.portfolio import run_portfolio
from candlecast.data.sample import load_sample
from candlecast.features import FeatureConfig, compute_features, priming_bars
from candlecast.portfolio import PortfolioConfig, PortfolioConstructor
from candlecast.portfolio.deciders import ConstructorDecider, ForecastPanel
from candlecast.risk import RiskConfig
from candlecast.risk.config import LimitsConfig, SizingConfig
from candlecast.trading import PaperBroker, ReplayFeed, StateStore, TradeConfig, Trader
from candlecast.trading.portfolio_signals import PortfolioAnswer

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
START, N = pd.Timestamp("2018-06-01", tz="UTC"), 900
STEP = pd.Timedelta("30min")


class ScriptedPortfolio:
    """An in-process ``/portfolio``: the SAME constructor the backtester runs, on the panel
    row of the request's latest candle, for the weights the trader reports; a coin is
    tradable when its candles reach that bar (what the real service does)."""

    def __init__(self, constructor: PortfolioConstructor, panel: ForecastPanel) -> None:
        self.constructor, self.panel = constructor, panel
        self.index = {int(t): i for i, t in enumerate(panel.ts_ns)}
        self.requests: list[tuple[int, dict[str, float], dict[str, int]]] = []

    def portfolio(self, exchange, timeframe, candles, positions):  # noqa: ANN001, ANN201
        last = max(bars[-1].ts for bars in candles.values() if bars)
        bar = self.index[last]
        weights = {s: w for s, (w, _) in positions.items()}
        held = {s: h for s, (_, h) in positions.items()}
        self.requests.append((last, weights, held))
        p = self.panel
        d = self.constructor.decide_arrays(
            p.symbols, p.expected_return[self.constructor.horizon][bar], p.volatility[bar],
            p.beta[bar], p.correlation[bar], np.array([weights[s] for s in p.symbols]),
            np.array([held[s] for s in p.symbols]),
            np.array([bool(candles[s]) and candles[s][-1].ts == last for s in p.symbols]),
            last // p.bar_ns)
        return PortfolioAnswer("ok", dict(d.weights), d.reason,
                               self.constructor.config.execution, "scripted-portfolio",
                               pd.Timestamp(last + p.bar_ns, tz="UTC"))

    def ready(self) -> bool:
        return True


class Recording(ConstructorDecider):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, dict[str, float], dict[str, int]]] = []

    def decide(self, bar, ts_ns, weights, bars_held, tradable):  # noqa: ANN001, ANN201
        self.calls.append((ts_ns, dict(weights), dict(bars_held)))
        return super().decide(bar, ts_ns, weights, bars_held, tradable)


@pytest.fixture(scope="module")
def coins(repo_root) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Per coin: history for priming + the replay, and the replayed candles alone (real
    Bitfinex 30m data, with its gaps)."""
    prime = priming_bars(FeatureConfig())
    out = {}
    for symbol in SYMBOLS:
        candles = load_sample(repo_root / "data" / "sample", "bitfinex_30m", symbol)
        first = int(np.searchsorted(candles["timestamp"], START))
        full = candles.iloc[first - prime:first + N].reset_index(drop=True)
        out[symbol] = (full, full.iloc[prime:].reset_index(drop=True))
    return out


def _panel(coins) -> tuple[ForecastPanel, dict[str, np.ndarray]]:  # noqa: ANN001
    """A noisy forecast of each coin's next-16-bar return relative to the others (an IC well
    below 1), rv_48 as the volatility, on the union of the replayed bars; ATR per coin."""
    frames = {s: replay for s, (_, replay) in coins.items()}
    ts = np.unique(np.concatenate([pd.DatetimeIndex(f["timestamp"]).asi8 for f in
                                   frames.values()]))
    n, k = len(ts), len(SYMBOLS)
    fwd, vol = np.full((n, k), np.nan), np.full((n, k), np.nan)
    atr = {}
    for j, (symbol, (full, replay)) in enumerate(coins.items()):
        feats = compute_features(full).iloc[len(full) - len(replay):].reset_index(drop=True)
        at = np.searchsorted(ts, pd.DatetimeIndex(replay["timestamp"]).asi8)
        close = replay["close"].to_numpy()
        ahead = np.append(np.log(close[16:] / close[:-16]), np.zeros(16))
        fwd[at, j], vol[at, j] = ahead, feats["rv_48"].to_numpy()
        atr[symbol] = feats["atr"].to_numpy()
    rel = fwd - np.nanmean(fwd, axis=1, keepdims=True)
    rng = np.random.default_rng(11)
    er = (rel + rng.normal(0, 2.0 * np.nanstd(rel), rel.shape)) / 5.0
    er[~np.isfinite(fwd)] = np.nan
    panel = ForecastPanel(SYMBOLS, ts, int(STEP.value), {16: er}, vol,
                          np.ones((n, k)), np.full((n, k), 0.8))
    return panel, atr


def _trader(tmp_path, coins, script, risk, costs, backtest, **config):  # noqa: ANN001, ANN003, ANN202
    cfg = TradeConfig(exchange="bitfinex", symbols=SYMBOLS, timeframe="30m",
                      decision="portfolio", predict_candles=64, signal_retries=0,
                      state_db=str(tmp_path / "state.db"), kill_switch_file=str(tmp_path / "K"),
                      pause_file=str(tmp_path / "P"), poll_interval_s=0.01, state_sync="NORMAL",
                      **config)
    feed = ReplayFeed({s: full for s, (full, _) in coins.items()}, "30m", start=START)
    store = StateStore(cfg.state_db, synchronous=cfg.state_sync)
    trader = Trader(cfg, broker=PaperBroker(costs), feed=feed, signals=script, store=store,
                    risk=risk, costs=costs, backtest=backtest, feature_sink=MemorySink(),
                    sleep=lambda s: None)
    return trader, store


BOOK_RISK = RiskConfig(
    sizing=SizingConfig(method="fixed_notional", max_position_fraction=0.6,
                        max_gross_exposure=1.0),
    exits={"stop_atr_multiple": 3.0, "chandelier_atr_multiple": None,
           "breakeven_trigger_r": None},
    limits=LimitsConfig(max_concurrent_positions=3, max_trades_per_day=20))


@pytest.mark.parametrize("mode", ["long_only", "long_short"])
def test_portfolio_replay_matches_the_portfolio_backtest(tmp_path, coins, mode):
    """Fills (time, coin, side, size, price, fee, reason), the decisions journal, the book's
    equity at every candle and what the trader reported all equal the backtester's; coins
    missing a candle are neither traded nor decided on it; ATR stops act between decisions."""
    panel, atr = _panel(coins)
    config = PortfolioConfig(horizon=16, mode=mode, top_k=1, buffer=0, weighting="inverse_vol",
                             vol_target=0.6, max_weight=0.6, max_beta=None,
                             rebalance_every=4, min_trade=0.02, cost_margin=0.3)
    costs = CostConfig()
    backtest = BacktestConfig(allow_short=mode == "long_short")
    constructor = PortfolioConstructor(config, costs, 17_520.0)
    decider = Recording(constructor, panel)
    markets = {s: prepare_market(replay) for s, (_, replay) in coins.items()}
    book = run_portfolio(markets, decider, BOOK_RISK, costs, backtest, config.execution,
                         atr=atr)
    script = ScriptedPortfolio(constructor, panel)
    trader, store = _trader(tmp_path, coins, script, BOOK_RISK, costs, backtest)
    summary = trader.run()
    assert summary.status == "ended" and summary.ticks == len(panel.ts_ns)
    fills = trader_fills(store).sort_values(["ts", "symbol"], kind="stable")
    expected = book.fills
    assert len(expected) > 30 and expected["symbol"].nunique() == 3  # every coin traded
    assert list(fills["symbol"]) == list(expected["symbol"])
    assert_same_fills(fills.reset_index(drop=True), expected)
    ticks = store.frame("ticks")
    np.testing.assert_allclose(ticks["equity"].to_numpy(), book.equity, rtol=1e-9)
    # the trader's decisions journal = the backtester's (but its decisions at the last candle)
    last = int(panel.ts_ns[-1])
    mine = store.frame("decisions")
    mine = mine[~((mine["ts"] == last) & mine["action"].isin(["target", "enter", "reject"]))]
    theirs = book.decisions
    assert list(zip(mine["symbol"], mine["action"], mine["reason"], strict=True)) == list(
        zip(theirs["symbol"], theirs["action"], theirs["reason"], strict=True))
    # what the trader reported = what the backtester's decider was given
    reported = script.requests[:len(decider.calls)]
    assert [r[0] for r in reported] == [c[0] for c in decider.calls]
    assert [r[2] for r in reported] == [c[2] for c in decider.calls]
    for (_, mine_w, _), (_, their_w, _) in zip(reported, decider.calls, strict=True):
        for s in SYMBOLS:
            assert mine_w[s] == pytest.approx(their_w[s], rel=1e-9, abs=1e-12)
    # a coin without a candle at a tick is never traded nor decided on it
    for j, s in enumerate(SYMBOLS):
        missing = set(panel.ts_ns[~book.present[:, j]].tolist())
        assert not set(fills.loc[fills["symbol"] == s, "ts"]) & missing
        assert not set(store.frame("decisions").query("symbol == @s")["ts"]) & missing
    assert any((~book.present[:, j]).any() for j in range(3))  # the real data has gaps
    if mode == "long_short":
        assert (book.positions < 0).any() and abs(book.net[100:].mean()) < 0.2
    else:
        assert (book.positions >= 0).all()
    assert "stop_loss" in set(expected["reason"]) or mode == "long_only"
    bars = store.frame("bars")
    assert bars["target_position"].notna().mean() > 0.99
    assert set(bars["policy_reason"]) <= {"initial", "rebalance", "hold", "swap_below_cost",
                                          "not_rebalance_bar", "no_forecast"}


def test_portfolio_mode_fingerprint_refuses_a_per_coin_state(tmp_path, coins):
    panel, _ = _panel(coins)
    constructor = PortfolioConstructor(PortfolioConfig(horizon=16), CostConfig(), 17_520.0)
    trader, store = _trader(tmp_path, coins, ScriptedPortfolio(constructor, panel),
                            BOOK_RISK, CostConfig(), BacktestConfig())
    trader.run(max_ticks=3)
    store.close()
    cfg = TradeConfig(exchange="bitfinex", symbols=SYMBOLS, timeframe="30m",
                      state_db=str(tmp_path / "state.db"))
    with pytest.raises(ValueError, match="(?i)fingerprint|different|match"):
        Trader(cfg, broker=PaperBroker(), feed=ReplayFeed({s: f for s, (f, _) in coins.items()},
                                                          "30m", start=START),
               signals=ScriptedPortfolio(constructor, panel),
               store=StateStore(cfg.state_db), risk=BOOK_RISK)
    assert math.isfinite(trader.equity())


class FixedBook:
    """A ``/portfolio`` answering the same target weights at every candle (fresh), recording
    the weights the trader reported."""

    def __init__(self, weights: dict[str, float], step_ns: int) -> None:
        self.weights, self.step_ns = weights, step_ns
        self.reported: list[dict[str, float]] = []

    def portfolio(self, exchange, timeframe, candles, positions):  # noqa: ANN001, ANN201
        from candlecast.backtest.config import ExecutionConfig

        self.reported.append({s: w for s, (w, _) in positions.items()})
        last = max(bars[-1].ts for bars in candles.values() if bars)
        return PortfolioAnswer("ok", dict(self.weights), "rebalance", ExecutionConfig(),
                               "fixed-book", pd.Timestamp(last + self.step_ns, tz="UTC"))

    def ready(self) -> bool:
        return True


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def notify(self, event: str, message: str, **fields) -> None:  # noqa: ANN003
        self.sent.append((event, message))


def test_live_rebalance_with_a_refused_coin_is_partial_reported_and_retried(tmp_path):
    """Live (the real ccxt client against the fake Binance): the book wants 40 % BTC and 40 %
    ETH; the venue refuses every ETH order. BTC's order goes out and fills, ETH's fails: the
    trader journals and alerts a partial rebalance naming both outcomes, reports ETH's real
    weight (0) at the next candle and asks again with a new order (new client id)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
    from fake_binance import DEFAULT_LISTING_MS
    from fake_binance_orders import CCXT_SPOT_OPTIONS, FakeBinanceOrders, FakeOrdersServer

    from candlecast.exchange import BackoffPolicy, CcxtOhlcvSource, PermanentExchangeError
    from candlecast.exchange.orders import CcxtOrderGateway
    from candlecast.trading import CcxtBroker, CcxtFeed

    hour_ms = 3_600_000
    fake = FakeBinanceOrders(now_ms=DEFAULT_LISTING_MS + 1000 * hour_ms + 60_000,
                             api_key="k3y", balances={"USDT": 10_000.0})
    with FakeOrdersServer(fake) as server:
        gateway = CcxtOrderGateway.create("binance", api_key="k3y", api_secret="s3cr3t",
                                          timeout_ms=300, rate_limit_ms=1, api_url=server.url,
                                          options=CCXT_SPOT_OPTIONS)
        real_create = gateway.create_order

        def refuse_eth(symbol, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if symbol == "ETH/USDT":
                raise PermanentExchangeError("binance", "ETH/USDT: trading is halted")
            return real_create(symbol, *args, **kwargs)

        gateway.create_order = refuse_eth
        cfg = TradeConfig(mode="live", live_confirmed=True, exchange="binance",
                          symbols=("BTC/USDT", "ETH/USDT"), timeframe="1h",
                          decision="portfolio", state_db=str(tmp_path / "live.db"),
                          kill_switch_file=str(tmp_path / "K"), pause_file=str(tmp_path / "P"),
                          signal_retries=0, poll_interval_s=0.01, candle_close_delay_s=1.0,
                          state_sync="NORMAL")

        def advance(seconds: float) -> None:
            fake.now_ms += 20 * 60_000

        source = CcxtOhlcvSource.create("binance", timeout_ms=1000, rate_limit_ms=1,
                                        api_url=server.url, options=CCXT_SPOT_OPTIONS)
        feed = CcxtFeed(source, cfg.series, close_delay_s=1.0, now=lambda: fake.now_ms / 1000,
                        sleep=advance)
        broker = CcxtBroker(gateway, CostConfig(), policy=BackoffPolicy(1, 0.01, 0.02),
                            sleep=lambda s: None)
        book = FixedBook({"BTC/USDT": 0.4, "ETH/USDT": 0.4}, hour_ms * 1_000_000)
        alerts = Alerts()
        store = StateStore(cfg.state_db, synchronous="NORMAL")
        risk = RiskConfig.plain(1.0).model_copy(update={"limits": LimitsConfig(
            max_daily_loss=None, max_drawdown=None, drawdown_scale_start=None,
            drawdown_scale_end=None, max_trades_per_day=None, max_concurrent_positions=2)})
        trader = Trader(cfg, broker=broker, feed=feed, signals=book, store=store, risk=risk,
                        costs=CostConfig(), backtest=BacktestConfig(allow_short=False),
                        feature_sink=MemorySink(), notifier=alerts)
        trader.reconcile()
        assert trader.run(max_ticks=3).status == "max_ticks"
        events = store.frame("events")
        partial = events[events["kind"] == "partial_rebalance"]
        assert len(partial) >= 2  # every candle it tries again, and says so
        message = partial["message"].iloc[0]
        assert "ETH/USDT failed" in message and "BTC/USDT" in message
        orders = store.frame("orders")
        eth = orders[orders["symbol"] == "ETH/USDT"]
        assert (eth["status"] == "failed").all() and eth["client_id"].nunique() >= 2
        assert trader.books["BTC/USDT"].pos > 0 and trader.books["ETH/USDT"].pos == 0
        weight = trader.books["BTC/USDT"].pos * trader.books["BTC/USDT"].last_close
        assert weight / trader.equity() == pytest.approx(0.4, rel=0.02)
        assert book.reported[-1]["ETH/USDT"] == 0.0  # the book as it is, asked again
        assert book.reported[-1]["BTC/USDT"] == pytest.approx(0.4, rel=0.02)
        assert [e for e, _ in alerts.sent].count("partial_rebalance") == len(partial)
        assert not [o for o in fake.orders if o["symbol"] == "ETHUSDT"]
        store.close()
