"""Assemble a :class:`~candlecast.trading.trader.Trader` from configuration (the CLI's edge).

This is the only trading module that reads environment variables, and it reads exactly two:
the API key and secret named by ``TradeConfig.api_key_env`` / ``api_secret_env``, only in live
mode. They go straight into the ccxt exchange object; nothing else keeps, logs or stores them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.common.time import as_utc
from candlecast.data.store import CandleStore
from candlecast.exchange.retry import BackoffPolicy
from candlecast.features import FeatureConfig, feature_names, priming_bars
from candlecast.risk import RiskConfig
from candlecast.trading.broker import Broker, PaperBroker
from candlecast.trading.config import TradeConfig
from candlecast.trading.feast_sink import FeastOnlineSink, FeatureSink
from candlecast.trading.feeds import CandleFeed, CcxtFeed, ReplayFeed
from candlecast.trading.ops import StopFlag
from candlecast.trading.signals import HttpSignalClient, SignalClient
from candlecast.trading.store import StateStore
from candlecast.trading.trader import Trader


@dataclass(frozen=True)
class ReplaySpec:
    """Replay stored candles instead of polling the exchange (paper only).

    ``start``/``end``: ISO times (end exclusive); ``last``: replay only the last N candles; by
    default the replay starts right after the feature-priming history. ``speed``: candles per
    timeframe of wall time (``0`` = as fast as possible; ``1800`` replays 30m candles at one per
    second).
    """

    start: str | None = None
    end: str | None = None
    last: int | None = None
    speed: float = 0.0


def live_credentials(config: TradeConfig, env: Mapping[str, str]) -> tuple[str, str]:
    """(key, secret) from the environment; the error names the variables, never values."""
    key, secret = env.get(config.api_key_env, ""), env.get(config.api_secret_env, "")
    missing = [name for name, value in ((config.api_key_env, key),
                                        (config.api_secret_env, secret)) if not value]
    if missing:
        raise ValueError(f"live trading needs exchange credentials in the environment: set "
                         f"{' and '.join(missing)}")
    return key, secret


def _replay_feed(config: TradeConfig, root: Path, spec: ReplaySpec,
                 features: FeatureConfig) -> ReplayFeed:
    store = CandleStore(root / config.replay_store)
    series = config.series
    frames = {}
    for s in series:
        frame = store.read(s)
        if frame.empty:
            raise ValueError(f"nothing to replay: no stored candles for {s.key} under "
                             f"{root / config.replay_store}")
        frames[s.symbol] = frame
    first = min(frame["timestamp"].iloc[0] for frame in frames.values())
    if spec.start is not None:
        start = as_utc(spec.start)
    elif spec.last is not None:
        if spec.last < 1:
            raise ValueError(f"--replay-last must be >= 1, got {spec.last}")
        start = max(frame["timestamp"].iloc[-min(spec.last, len(frame))]
                    for frame in frames.values())
    else:
        start = max(frame["timestamp"].iloc[min(priming_bars(features), len(frame) - 1)]
                    for frame in frames.values())
    if start < first:
        start = first
    end = None if spec.end is None else pd.Timestamp(spec.end, tz="UTC")
    return ReplayFeed(frames, config.timeframe, start=start, end=end, speed=spec.speed)


# The keyword arguments of ``Trader`` (what it is built from): a deliberate mirror, each
# defaulted here from the config so a caller passes only what it injects.
def build_trader(
    config: TradeConfig,
    *,
    root: str | Path = ".",
    risk: RiskConfig | None = None,
    costs: CostConfig | None = None,
    backtest: BacktestConfig | None = None,
    features: FeatureConfig | None = None,
    replay: ReplaySpec | None = None,
    signals: SignalClient | None = None,
    feature_sink: FeatureSink | None | bool = True,
    feed: CandleFeed | None = None,
    broker: Broker | None = None,
    stop: StopFlag | None = None,
    env: Mapping[str, str] | None = None,
) -> Trader:
    """A ready trader: state opened (or resumed), features primed, live account reconciled.

    Relative paths in ``config`` are under ``root``. ``signals``/``feature_sink``/``feed``/
    ``broker`` override the defaults (HTTP client, Feast sink when ``write_features``, replay,
    REST polling or WebSocket stream feed (``trade.feed``), paper or ccxt broker);
    ``feature_sink=False`` disables the Feast write. A feed with ``start``/``close`` (the stream)
    is started here; the caller closes it (``trader.feed.close()``) when the session ends.
    """
    config.check_live_allowed()
    root = Path(root)
    costs = costs or CostConfig()
    features = features or FeatureConfig()
    if config.is_live and replay is not None:
        raise ValueError("--replay is paper only: live orders need live candles")
    if broker is None:
        if config.is_live:
            from candlecast.exchange.orders import CcxtOrderGateway
            from candlecast.trading.ccxt_broker import CcxtBroker

            key, secret = live_credentials(config, os.environ if env is None else env)
            gateway = CcxtOrderGateway.create(
                config.exchange, api_key=key, api_secret=secret,
                timeout_ms=config.exchange_timeout_ms, rate_limit_ms=config.exchange_rate_limit_ms,
                api_url=config.exchange_api_url, options=config.exchange_options or None)
            del key, secret
            policy = BackoffPolicy(config.order_retries, config.order_backoff_s,
                                   config.order_backoff_max_s)
            broker = CcxtBroker(gateway, costs, strategy_id=config.strategy_id, policy=policy)
        else:
            broker = PaperBroker(costs)
    if feed is None:
        if replay is not None:
            feed = _replay_feed(config, root, replay, features)
        elif config.feed == "stream":
            from candlecast.trading.stream import stream_feed

            feed = stream_feed(config, root)
        else:
            from candlecast.exchange import CcxtOhlcvSource

            source = CcxtOhlcvSource.create(
                config.exchange, timeout_ms=config.exchange_timeout_ms,
                rate_limit_ms=config.exchange_rate_limit_ms, api_url=config.exchange_api_url,
                options=config.exchange_options or None)
            feed = CcxtFeed(source, config.series, close_delay_s=config.candle_close_delay_s,
                            policy=BackoffPolicy(config.order_retries, config.order_backoff_s,
                                                 config.order_backoff_max_s))
    if signals is None:
        if config.decision == "portfolio":  # POST /portfolio: the whole book in one answer
            from candlecast.trading.portfolio_signals import HttpPortfolioClient

            signals = HttpPortfolioClient(config.service_url, config.service_timeout_s)
        else:
            signals = HttpSignalClient(config.service_url, config.service_timeout_s)
    sink: FeatureSink | None
    if feature_sink is True:
        from candlecast.feature_store.definitions import view_columns

        sink = (FeastOnlineSink(root / config.feast_repo, view_columns(feature_names(features)),
                                config_file=config.feast_config)
                if config.write_features else None)
    elif feature_sink is False:
        sink = None
    else:
        sink = feature_sink
    store = StateStore(root / config.state_db, synchronous=config.state_sync)
    paths = {"kill_switch_file": str(root / config.kill_switch_file),
             "pause_file": str(root / config.pause_file)}
    config = TradeConfig.model_validate({**config.model_dump(), **paths})
    try:
        trader = Trader(config, broker=broker, feed=feed, signals=signals, store=store,
                        risk=risk, costs=costs, backtest=backtest, features=features,
                        feature_sink=sink, stop=stop)
        if config.is_live:
            trader.reconcile()
        if hasattr(feed, "start"):  # the stream feed subscribes before the first tick
            feed.start()
    except BaseException:
        store.close()
        if hasattr(feed, "close"):
            feed.close()
        raise
    return trader
