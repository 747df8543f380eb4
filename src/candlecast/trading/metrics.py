"""Prometheus metrics of a running trader (``trade run --metrics-port N`` / ``trade.metrics_port``).

A custom collector reads the trader and its feed at scrape time, so nothing is counted twice and
the trading path does no metrics work:

* ``candlecast_trader_events_total{kind}`` (counter): every journalled event of this process by
  kind, the trader's (``no_fresh_signal``, ``stale_data``, ``gap``, ``bad_candle``, ...) and the
  feed's (``stream_disconnected``, ``stream_silent``, ``candle_revised``, ``backfill``, ...);
* ``candlecast_trader_equity`` (gauge): cash - funding + positions at the last close;
* ``candlecast_trader_last_tick_seconds`` (gauge): the last tick, candle received to orders
  submitted;
* ``candlecast_trader_killed``, ``candlecast_trader_paused`` (gauges): 1 when engaged;
* ``candlecast_feed_stale`` (gauge): 1 while the feed's data is stale (stream silent);
* ``candlecast_feed_last_message_age_seconds`` (gauge): since the stream's last message;
* ``candlecast_feed_connected_subscriptions`` / ``candlecast_feed_subscriptions`` (gauges);
* ``candlecast_feed_messages_total`` (counter): stream wake-ups with data;
* ``candlecast_feed_reconnects_total`` (counter): connections lost and replaced;
* ``candlecast_feed_candles_total{source}`` (counter): candles handed on, from the ``stream``
  or the ``rest`` backfill.

(The feed metrics exist when the feed is the streaming one.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class TraderCollector(Collector):
    """Reads ``trader`` (a :class:`~candlecast.trading.trader.Trader`) on every scrape."""

    def __init__(self, trader: Any) -> None:
        self.trader = trader

    def collect(self) -> Iterator[Metric]:
        t = self.trader
        events = CounterMetricFamily("candlecast_trader_events",
                                     "Events journalled by the trader (the feed's included).",
                                     labels=["kind"])
        for kind, n in sorted(t.event_counts.items()):
            events.add_metric([kind], n)
        yield events
        equity = t.equity()
        yield GaugeMetricFamily("candlecast_trader_equity", "Equity at the last close.",
                                value=equity if math.isfinite(equity) else math.nan)
        last = t.latencies_s[-1] if t.latencies_s else math.nan
        yield GaugeMetricFamily("candlecast_trader_last_tick_seconds",
                                "Wall time of the last tick (candle to orders submitted).",
                                value=last)
        yield GaugeMetricFamily("candlecast_trader_killed", "1 when the kill switch is engaged.",
                                value=float(t.account.killed))
        yield GaugeMetricFamily("candlecast_trader_paused", "1 while paused.",
                                value=float(t.paused))
        feed = t.feed
        if hasattr(feed, "health") and hasattr(feed, "stats"):
            yield from _feed_metrics(feed.health(), feed.stats())


def _feed_metrics(health: Any, stats: dict[str, int]) -> Iterator[Metric]:
    yield GaugeMetricFamily("candlecast_feed_stale", "1 while the feed's data is stale.",
                            value=1.0 if health.stale else 0.0)
    yield GaugeMetricFamily("candlecast_feed_last_message_age_seconds",
                            "Seconds since the stream's last message.",
                            value=health.last_message_age_s)
    yield GaugeMetricFamily("candlecast_feed_connected_subscriptions",
                            "Stream subscriptions receiving.", value=health.connected)
    yield GaugeMetricFamily("candlecast_feed_subscriptions", "Stream subscriptions.",
                            value=health.groups)
    yield CounterMetricFamily("candlecast_feed_messages", "Stream wake-ups with data.",
                              value=stats.get("messages", 0))
    yield CounterMetricFamily("candlecast_feed_reconnects", "Stream connections replaced.",
                              value=stats.get("reconnects", 0))
    candles = CounterMetricFamily("candlecast_feed_candles", "Candles handed on by source.",
                                  labels=["source"])
    for source in ("stream", "rest"):
        candles.add_metric([source], stats.get(f"candles_{source}", 0))
    yield candles


def trader_registry(trader: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(TraderCollector(trader))
    return registry


def serve_metrics(trader: Any, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the server (its
    ``server_address`` has the port; ``shutdown()`` and ``server_close()`` stop it)."""
    server, _thread = start_http_server(port, addr=host, registry=trader_registry(trader))
    return server
