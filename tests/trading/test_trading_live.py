"""Live orders through the real ccxt client against a fake Binance on 127.0.0.1: precision,
idempotent client ids, no duplicate after a timeout whose outcome is unknown, post-only limit
orders (refused when they would take, filled only when a later candle trades through them,
cancelled or replaced by a market order at expiry), reconciliation after a crash, whole live
sessions with market and with limit execution, and credentials that never leak."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_binance import DEFAULT_LISTING_MS  # noqa: E402
from fake_binance_orders import (  # noqa: E402
    CCXT_SPOT_OPTIONS,
    FakeBinanceOrders,
    FakeOrdersServer,
    OrderFault,
)
from trading_helpers import MemorySink, PolicyScript, ScriptedSignals  # noqa: E402

from candlecast.backtest import BacktestConfig, CostConfig  # noqa: E402
from candlecast.backtest.config import ExecutionConfig  # noqa: E402
from candlecast.exchange import (  # noqa: E402
    BackoffPolicy,
    CcxtOhlcvSource,
    PermanentExchangeError,
    TransientExchangeError,
)
from candlecast.exchange.orders import CcxtOrderGateway  # noqa: E402
from candlecast.policy import Policy, PolicyConfig  # noqa: E402
from candlecast.risk import RiskConfig  # noqa: E402
from candlecast.trading import (  # noqa: E402
    Bar,
    CcxtBroker,
    CcxtFeed,
    StateStore,
    SymbolBook,
    TradeConfig,
    Trader,
    client_order_id,
)

KEY, SECRET = "k3y-TESTKEY-0xDEADBEEF", "s3cr3t-TESTSECRET-0xFEEDFACE"
HOUR_MS = 3_600_000
NOW_MS = DEFAULT_LISTING_MS + 1000 * HOUR_MS + 60_000  # 1000 closed hourly candles
SYMBOL = "BTC/USDT"


@pytest.fixture(name="exchange")
def exchange_fixture():
    fake = FakeBinanceOrders(now_ms=NOW_MS, api_key=KEY)
    with FakeOrdersServer(fake) as server:
        yield fake, server


def _gateway(server, key: str = KEY, timeout_ms: int = 300) -> CcxtOrderGateway:
    return CcxtOrderGateway.create("binance", api_key=key, api_secret=SECRET,
                                   timeout_ms=timeout_ms, rate_limit_ms=1, api_url=server.url,
                                   options=CCXT_SPOT_OPTIONS)


def _broker(server, events: list | None = None) -> CcxtBroker:
    broker = CcxtBroker(_gateway(server), CostConfig(), policy=BackoffPolicy(2, 0.01, 0.02),
                        sleep=lambda s: None,
                        on_event=(lambda k, m: events.append((k, m))) if events is not None
                        else None)
    broker.start([SYMBOL])
    return broker


def _book(target: float, intent: str = "target:enter_long:long", **order) -> SymbolBook:
    book = SymbolBook(SYMBOL)
    book.set_order(target, None, "target:enter_long",
                   client_order_id("candlecast", "binance:BTC/USDT:1h", NOW_MS, intent), True,
                   **order)
    return book


def _bar(fake) -> Bar:
    open_ms = NOW_MS - NOW_MS % HOUR_MS
    return Bar(open_ms * 1_000_000, fake.market_price("BTCUSDT"), 1e9, 1.0, 1.0, 1.0)


def test_timeout_after_accept_is_looked_up_not_resent(exchange):
    fake, server = exchange
    events: list = []
    broker = _broker(server, events)
    fake.order_faults[0] = OrderFault("accept_then_timeout", delay_s=0.6)
    book = _book(0.0123456789)
    report = broker.submit(book, ref_price=fake.market_price("BTCUSDT"))
    assert report.status == "closed" and report.amount == pytest.approx(0.01234)  # step 1e-5
    assert fake.order_posts == 1 and len(fake.orders) == 1  # never sent twice
    assert fake.orders[0]["clientOrderId"] == book.order_id
    assert [k for k, _ in events] == ["order_uncertain", "order_found"]
    fills = broker.open_fills(book, _bar(fake))
    broker.settle(book)
    price = fake.market_price("BTCUSDT")
    assert len(fills) == 1 and not book.pending
    assert fills[0].qty == pytest.approx(0.01234) and fills[0].price == pytest.approx(price)
    assert fills[0].fee == pytest.approx(0.01234 * price * fake.taker_fee)  # = what it charged
    assert broker.open_fills(book, _bar(fake)) == []  # nothing booked twice


def test_request_lost_before_accept_is_sent_again_with_the_same_id(exchange):
    fake, server = exchange
    broker = _broker(server)
    fake.order_faults[0] = OrderFault("timeout_before_accept", delay_s=0.6)
    book = _book(0.01)
    assert broker.submit(book, ref_price=1000.0).status == "closed"
    assert fake.order_posts == 2 and len(fake.orders) == 1
    assert fake.orders[0]["clientOrderId"] == book.order_id


def test_unknown_outcome_waits_for_the_exchange(exchange):
    """Create times out AND the look-up keeps failing: nothing is re-sent; the next candle asks
    again, finds the order and books its fill once."""
    fake, server = exchange
    broker = _broker(server)
    fake.order_faults[0] = OrderFault("accept_then_timeout", delay_s=0.6)
    fake.query_faults.update({i: OrderFault("http", status=503) for i in range(3)})
    book = _book(0.01)
    report = broker.submit(book, ref_price=1000.0)
    assert report.status == "unknown" and book.pending and book.order_status == "unknown"
    assert fake.order_posts == 1
    fills = broker.open_fills(book, _bar(fake))
    assert len(fills) == 1 and fake.order_posts == 1 and len(fake.orders) == 1


def test_precision_minimums_and_duplicate_ids(exchange):
    fake, server = exchange
    broker = _broker(server)
    tiny = _book(0.000004)  # below the 0.00001 step: truncates to 0
    assert broker.submit(tiny, ref_price=1000.0).status == "skipped" and not tiny.pending
    assert fake.order_posts == 0
    book = _book(0.01)
    assert broker.submit(book, ref_price=1000.0).status == "closed"
    again = _book(0.01)  # the same decision again (e.g. replayed after a crash): same id
    assert again.order_id == book.order_id
    assert broker.submit(again, ref_price=1000.0).status == "closed"
    assert len(fake.orders) == 1  # the exchange refused the duplicate; we found the original
    gw = broker.gateway
    assert gw.price_to_precision(SYMBOL, 1234.5678) == 1234.57


def _script(fake, execution: ExecutionConfig | None = None) -> PolicyScript:
    """A long-only policy (half the account at most) on a noisy forecast of the next 4 hours
    of every candle the fake will serve in the next 500 hours."""
    start = pd.Timestamp(DEFAULT_LISTING_MS, unit="ms", tz="UTC")
    future = FakeBinanceOrders(now_ms=fake.now_ms + 500 * HOUR_MS)
    candles = future.expected(SYMBOL, "1h", start, start + pd.Timedelta(hours=1500))
    close = candles["close"].to_numpy()
    fwd = np.zeros(len(close))
    fwd[:-4] = np.log(close[4:] / close[:-4])
    er = (fwd + np.random.default_rng(11).normal(0, 0.5 * fwd.std(), len(fwd))) / 1.25
    cfg = PolicyConfig(horizon=4, entry_margin=1.0, exit_margin=0.0, min_hold_bars=1,
                       vol_target=None, max_position=0.5, allow_short=False, min_change=0.05,
                       execution=execution or ExecutionConfig())
    return PolicyScript(Policy(cfg, CostConfig(), 8760.0),
                        pd.DatetimeIndex(candles["timestamp"]).asi8.tolist(), er,
                        np.full(len(er), 0.005))


def _live_trader(fake, server, tmp_path, script, gateway=None) -> tuple[Trader, StateStore]:
    cfg = TradeConfig(mode="live", live_confirmed=True, exchange="binance", symbols=(SYMBOL,),
                      timeframe="1h", state_db=str(tmp_path / "live.db"),
                      kill_switch_file=str(tmp_path / "KILL"), pause_file=str(tmp_path / "P"),
                      signal_retries=0, poll_interval_s=0.01, candle_close_delay_s=1.0,
                      state_sync="NORMAL")

    def advance(seconds: float) -> None:  # the exchange's clock moves 20 minutes per poll
        fake.now_ms += 20 * 60_000

    source = CcxtOhlcvSource.create("binance", timeout_ms=1000, rate_limit_ms=1,
                                    api_url=server.url, options=CCXT_SPOT_OPTIONS)
    feed = CcxtFeed(source, cfg.series, close_delay_s=1.0, now=lambda: fake.now_ms / 1000,
                    sleep=advance)
    broker = CcxtBroker(gateway or _gateway(server), CostConfig(),
                        policy=BackoffPolicy(2, 0.01, 0.02), sleep=lambda s: None)
    sink = MemorySink()
    signals = ScriptedSignals(sink, HOUR_MS * 1_000_000, script)
    store = StateStore(cfg.state_db, synchronous="NORMAL")
    trader = Trader(cfg, broker=broker, feed=feed, signals=signals, store=store,
                    risk=RiskConfig.plain(0.5), costs=CostConfig(),
                    backtest=BacktestConfig(allow_short=False), feature_sink=sink)
    trader.reconcile()
    return trader, store


def _check_ledger(trader: Trader, fake) -> None:
    book = trader.books[SYMBOL]
    assert book.pos == pytest.approx(fake.balances.get("BTC", 0.0), abs=1e-9)
    assert trader.account.cash == pytest.approx(fake.balances["USDT"], rel=1e-9)


def test_live_session_crash_and_reconciliation(exchange, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake, server = exchange
    script = _script(fake)
    trader, store = _live_trader(fake, server, tmp_path, script)
    assert trader.run(max_ticks=150).status == "max_ticks"
    orders = store.frame("orders")
    sent = orders[orders["status"].isin(["closed", "filled"])]
    assert len(sent) >= 4  # it traded
    assert sorted(o["clientOrderId"] for o in fake.orders) == sorted(sent["client_id"])
    _check_ledger(trader, fake)
    fills = store.frame("fills")
    assert len(fills) == len(fake.filled_orders()) - (1 if trader.books[SYMBOL].pending else 0)

    # crash 1: the order is accepted by the exchange, then the process dies before recording it
    real_create = trader.broker.gateway.create_order

    def create_then_die(*args, **kwargs):
        real_create(*args, **kwargs)
        raise SystemExit("power cut")

    trader.broker.gateway.create_order = create_then_die
    posts = fake.order_posts
    with pytest.raises(SystemExit):
        while fake.order_posts == posts:
            trader.run(max_ticks=1)
    pending_id = trader.books[SYMBOL].order_id
    store.close()
    n_orders = len(fake.orders)
    trader, store = _live_trader(fake, server, tmp_path, script)  # restart
    assert fake.order_posts == n_orders and len(fake.orders) == n_orders  # found, not resent
    assert trader.books[SYMBOL].order_id == pending_id
    assert any("found" in m for m in store.frame("events")["message"])

    # crash 2: the decision is committed, the process dies before sending it
    def die(*args, **kwargs):
        raise SystemExit("killed before submit")

    trader.broker.submit = die
    before = len(fake.orders)
    with pytest.raises(SystemExit):
        for _ in range(200):
            trader.run(max_ticks=1)
    new_id = trader.books[SYMBOL].order_id
    assert len(fake.orders) == before and new_id != pending_id
    store.close()
    trader, store = _live_trader(fake, server, tmp_path, script)  # restart: sends it once
    assert [o["clientOrderId"] for o in fake.orders].count(new_id) == 1
    assert trader.run(max_ticks=20).status == "max_ticks"
    ids = [o["clientOrderId"] for o in fake.orders]
    assert len(ids) == len(set(ids))  # never a duplicate order
    _check_ledger(trader, fake)

    # credentials: used (the fake saw the key), but never logged, stored or shown
    assert fake.seen_api_keys == {KEY}
    text = caplog.text
    store.close()
    blobs = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("live.db"))
    for secret in (KEY, SECRET):
        assert secret not in text
        assert secret.encode() not in blobs
        for thing in (trader, trader.broker, trader.broker.gateway, trader.config, trader.feed):
            assert secret not in repr(thing)
    assert "create_order" in text or "order" in text  # the log is not empty


def _limit_book(target: float, price: float, intent: str) -> SymbolBook:
    return _book(target, intent, style="limit", limit=price, last_bar=5, on_expire="cancel")


def _posted(fake) -> list[dict]:
    return [r.params for r in fake.requests if r.path == "/api/v3/order" and "side" in r.params]


def test_post_only_limit_orders_refuse_to_take_and_fill_only_through_the_price(exchange):
    fake, server = exchange
    events: list = []
    broker = _broker(server, events)
    rules = broker.rules[SYMBOL]
    assert rules.post_only and rules.maker_fee == pytest.approx(0.001)  # ccxt's binance spot
    market = fake.market_price("BTCUSDT")

    taking = _limit_book(0.01, market * 1.001, "a")  # a buy above the market would take
    report = broker.submit(taking, ref_price=market)
    assert report.status == "rejected" and not taking.pending
    assert taking.order_status == "rejected" and fake.orders == []
    assert _posted(fake)[-1]["type"] == "LIMIT_MAKER"  # ccxt's postOnly on binance spot
    assert [k for k, _ in events] == ["post_only_rejected"]
    assert broker.open_fills(taking, _bar(fake)) == []  # nothing to poll

    wanted = market * 0.996 + 0.001234  # not on the 0.01 price grid
    book = _limit_book(0.0123456, wanted, "b")
    report = broker.submit(book, ref_price=market)
    assert report.status == "open" and report.price == round(wanted, 2)
    assert report.amount == pytest.approx(0.01234) and report.detail == "post-only"
    (order,) = fake.orders
    assert order["type"] == "LIMIT_MAKER" and float(order["price"]) == report.price
    price = report.price
    # the first candle from now whose low trades through the price fills it, once it closed
    step = HOUR_MS
    index = (fake.now_ms - fake.listing_ms) // step
    lows = []
    while not lows or not lows[-1] < price:
        row = fake.candle("BTCUSDT", index + len(lows), fake.listing_ms + (index + len(lows))
                          * step)
        lows.append(float(row[3]))
    assert len(lows) >= 1
    for _ in range(len(lows) - 1):  # candles that did not trade through: nothing
        fake.now_ms += step
        assert broker.open_fills(book, _bar(fake)) == [] and book.order_status == "open"
    fake.now_ms += step
    (fill,) = broker.open_fills(book, _bar(fake))
    assert broker.settle(book) == "filled" and not book.pending
    assert fill.qty == pytest.approx(0.01234) and fill.price == pytest.approx(price)
    assert fill.ref_price == price and fill.slippage == pytest.approx(0.0, abs=1e-9)
    assert fill.fee == pytest.approx(fake.executions[-1]["fee"], rel=1e-9)  # the maker fee
    assert fake.executions[-1]["maker"]

    resting = _limit_book(0.01, market * 0.5, "c")  # far below: rests until cancelled
    assert broker.submit(resting, ref_price=market).status == "open"
    assert broker.cancel(resting, 0) == [] and resting.order_status == "canceled"
    assert fake.orders[-1]["status"] == "CANCELED"

    broker.rules[SYMBOL] = dataclasses.replace(rules, post_only=False)  # a venue without it
    plain = _limit_book(0.01, fake.market_price("BTCUSDT") * 1.001, "d")
    report = broker.submit(plain, ref_price=market)
    assert report.status == "closed" and fake.orders[-1]["type"] == "LIMIT"  # took at once
    assert not fake.executions[-1]["maker"]


def test_cancel_never_forgets_an_order_the_exchange_cannot_describe(exchange):
    """A limit order to cancel (expiry, replacement) whose look-up keeps failing: the broker
    raises instead of dropping an order that may still fill; once the exchange answers, the
    cancel goes through."""
    fake, server = exchange
    broker = _broker(server)
    book = _limit_book(0.01, fake.market_price("BTCUSDT") * 0.5, "e")
    assert broker.submit(book, ref_price=1000.0).status == "open"
    fake.query_faults.update({fake.order_queries + i: OrderFault("http", status=503)
                              for i in range(3)})
    with pytest.raises(TransientExchangeError, match="cannot tell"):
        broker.cancel(book, 0)
    assert book.pending and fake.orders[-1]["status"] == "NEW"  # nothing forgotten
    assert broker.cancel(book, 0) == [] and not book.pending
    assert fake.orders[-1]["status"] == "CANCELED"


@pytest.mark.parametrize("on_expire", ["cancel", "market"])
def test_live_session_with_post_only_limit_orders(exchange, tmp_path, on_expire):
    """A live session whose policy works passive limit orders: sent post-only at the exchange's
    price precision; refused when the market already moved through them (dropped, decided
    again); partly filled under the fake's volume share; cancelled at expiry, or their rest
    sent as a market order; every fill booked once, the ledger equal to the exchange's."""
    fake, server = exchange
    fake.fill_participation = 0.02
    execution = ExecutionConfig(entry="limit", exit="limit", limit_offset_bps=10.0,
                                expire_bars=2, on_expire=on_expire)
    trader, store = _live_trader(fake, server, tmp_path, _script(fake, execution))
    assert trader.run(max_ticks=200).status == "max_ticks"
    orders = store.frame("orders")
    limits = orders[orders["style"] == "limit"]
    makers = fake.sent("LIMIT_MAKER")
    assert len(makers) >= 5 and fake.sent("LIMIT") == []
    sent = limits[limits["exchange_id"].notna()]
    assert sorted(o["clientOrderId"] for o in makers) == sorted(sent["client_id"])
    prices = {o["clientOrderId"]: float(o["price"]) for o in makers}
    for row in sent.itertuples():
        assert row.limit_price == prices[row.client_id]  # journalled as sent
        assert round(row.limit_price, 2) == row.limit_price  # on the 0.01 tick grid
    events = store.frame("events")
    rejected = limits[limits["status"] == "rejected"]
    assert len(rejected) >= 1 and (events["kind"] == "post_only_rejected").sum() == len(rejected)
    maker_fills = [e for e in fake.executions if e["maker"]]
    assert len(maker_fills) >= 5
    partial = {e["clientOrderId"] for e in maker_fills}
    assert any(sum(e["clientOrderId"] == c for e in maker_fills) > 1 for c in partial)
    deletes = [r for r in fake.requests if r.path == "/api/v3/order" and r.status == 200
               and r.params.get("orderId") and "side" not in r.params]
    assert deletes  # limit orders still open on their last candle were cancelled
    decisions = store.frame("decisions")
    if on_expire == "cancel":
        assert (decisions["action"] == "expire").sum() >= 1 and fake.sent("MARKET") == []
    else:
        after = orders[orders["intent"].str.endswith(":to_market")]
        assert len(after) >= 1 and (after["style"] == "market").all()
        assert {o["clientOrderId"] for o in fake.sent("MARKET")} <= set(after["client_id"])
    # every execution booked exactly once (the last working order's after a final poll)
    trader.reconcile()
    fills = store.frame("fills")
    booked = fills.groupby("client_id")["qty"].sum()
    executed = pd.Series([e["qty"] for e in fake.executions],
                         index=[e["clientOrderId"] for e in fake.executions]).groupby(level=0).sum()
    pd.testing.assert_series_equal(booked.sort_index(), executed.sort_index(), check_names=False,
                                   rtol=1e-9)
    reconciled = store.frame("events")
    assert not reconciled[reconciled["kind"] == "reconcile"]["message"].str.contains(
        "cash|position").any()  # nothing to adopt: the ledger was right
    _check_ledger(trader, fake)
    ids = [o["clientOrderId"] for o in fake.orders]
    assert len(ids) == len(set(ids))


def test_errors_never_carry_credentials(exchange):
    """The fake echoes a refused API key in its error body (some exchanges do): the gateway's
    error message masks it."""
    fake, server = exchange
    wrong_key = "WRONG-KEY-0xBADC0FFEE"
    wrong = _gateway(server, key=wrong_key)
    wrong.load_markets()
    with pytest.raises(PermanentExchangeError) as info:
        wrong.fetch_balances()
    message = str(info.value)
    assert "Invalid API-key" in message and "***" in message
    assert wrong_key not in message and SECRET not in message


def test_live_requires_flag_confirmation_and_env_keys(tmp_path):
    from candlecast.trading.session import build_trader

    with pytest.raises(ValueError, match="confirmation"):
        build_trader(TradeConfig(mode="live"), root=tmp_path, env={})
    with pytest.raises(ValueError, match="CANDLECAST_API_KEY and CANDLECAST_API_SECRET"):
        build_trader(TradeConfig(mode="live", live_confirmed=True, exchange="binance",
                                 symbols=(SYMBOL,), timeframe="1h"), root=tmp_path, env={})
    with pytest.raises(ValueError, match="CANDLECAST_API_SECRET"):
        build_trader(TradeConfig(mode="live", live_confirmed=True, exchange="binance",
                                 symbols=(SYMBOL,), timeframe="1h"), root=tmp_path,
                     env={"CANDLECAST_API_KEY": KEY})


def test_cli_live_needs_flag_confirmation_and_keys(tmp_path):
    from typer.testing import CliRunner

    from candlecast.trading.cli import trade_app

    no_keys = {"CANDLECAST_API_KEY": None, "CANDLECAST_API_SECRET": None}
    base = ["run", "--root", str(tmp_path), "--no-feast"]
    unconfirmed = CliRunner().invoke(trade_app, [*base, "--live"], env=no_keys)
    assert unconfirmed.exit_code == 1 and "--i-understand-live-trading" in unconfirmed.output
    keyless = CliRunner().invoke(trade_app, [*base, "--live", "--i-understand-live-trading"],
                                 env=no_keys)
    assert keyless.exit_code == 1 and "CANDLECAST_API_KEY" in keyless.output
    assert not (tmp_path / "data" / "trading" / "state.db").exists()  # nothing was started


def test_cli_reads_the_project_params_sections(tmp_path, repo_root):
    """With a params.yaml, the trader gets the backtest STAGE's run settings (`backtest.run`),
    the risk engine and costs of the project: the same objects the backtester is given."""
    import shutil

    from candlecast.backtest.config import BacktestConfig
    from candlecast.config import load_params
    from candlecast.trading.cli import _sections

    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    sections = _sections(tmp_path, None)
    params = load_params(tmp_path / "params.yaml")
    assert isinstance(sections["backtest"], BacktestConfig)
    assert sections["backtest"] == params.backtest.run
    assert (sections["risk"], sections["costs"]) == (params.risk, params.costs)
    assert sections["trade"] == params.trade and sections["features"] == params.features
