"""Paper and live trading: each closed candle -> features -> the policy's target position ->
risk engine -> orders (market, or passive limit) -> broker.

Paper mode is the default and trades exactly like the target backtester
(``backtest.targets.run_targets``: same risk engine, cost model and fill rules); live mode
places ccxt orders (limit orders post-only) with deterministic client ids. State lives in
SQLite (WAL), committed once per candle. See ``docs/trading.md``.
"""

from __future__ import annotations

from candlecast.common.lazy import lazy_getattr

# Imported on first use, so `from candlecast.<pkg>.config import X` stays light (the same
# table of name -> (module, attribute) as candlecast.backtest's, which still has its own copy
# of the __getattr__ that common/lazy.py now holds).
_LAZY: dict[str, tuple[str, str]] = {
    "Account": ("candlecast.trading.book", "Account"),
    "Bar": ("candlecast.trading.candles", "Bar"),
    "BarCheck": ("candlecast.trading.candles", "BarCheck"),
    "Broker": ("candlecast.trading.broker", "Broker"),
    "CandleFeed": ("candlecast.trading.feeds", "CandleFeed"),
    "CcxtBroker": ("candlecast.trading.ccxt_broker", "CcxtBroker"),
    "CcxtFeed": ("candlecast.trading.feeds", "CcxtFeed"),
    "END": ("candlecast.trading.feeds", "END"),
    "FeastOnlineSink": ("candlecast.trading.feast_sink", "FeastOnlineSink"),
    "FeatureSink": ("candlecast.trading.feast_sink", "FeatureSink"),
    "Fill": ("candlecast.trading.book", "Fill"),
    "HorizonForecast": ("candlecast.trading.signals", "HorizonForecast"),
    "HttpSignalClient": ("candlecast.trading.signals", "HttpSignalClient"),
    "IDLE": ("candlecast.trading.feeds", "IDLE"),
    "LiveSnapshot": ("candlecast.trading.ccxt_broker", "LiveSnapshot"),
    "PaperBroker": ("candlecast.trading.broker", "PaperBroker"),
    "PolicyInfo": ("candlecast.trading.signals", "PolicyInfo"),
    "ReplayFeed": ("candlecast.trading.feeds", "ReplayFeed"),
    "RunSummary": ("candlecast.trading.book", "RunSummary"),
    "Signal": ("candlecast.trading.signals", "Signal"),
    "SignalClient": ("candlecast.trading.signals", "SignalClient"),
    "SignalUnavailable": ("candlecast.trading.signals", "SignalUnavailable"),
    "StateLockedError": ("candlecast.trading.store", "StateLockedError"),
    "StateStore": ("candlecast.trading.store", "StateStore"),
    "StopFlag": ("candlecast.trading.ops", "StopFlag"),
    "SubmitReport": ("candlecast.trading.broker", "SubmitReport"),
    "SymbolBook": ("candlecast.trading.book", "SymbolBook"),
    "Tick": ("candlecast.trading.feeds", "Tick"),
    "TradeConfig": ("candlecast.trading.config", "TradeConfig"),
    "Trader": ("candlecast.trading.trader", "Trader"),
    "bars_from_frame": ("candlecast.trading.candles", "bars_from_frame"),
    "check_bar": ("candlecast.trading.candles", "check_bar"),
    "client_order_id": ("candlecast.trading.book", "client_order_id"),
    "parse_signal": ("candlecast.trading.signals", "parse_signal"),
    "plan_target": ("candlecast.trading.targets", "plan_target"),
    "read_flag_file": ("candlecast.trading.ops", "read_flag_file"),
    "read_only": ("candlecast.trading.store", "read_only"),
    "remove_flag_file": ("candlecast.trading.ops", "remove_flag_file"),
    "working_order_view": ("candlecast.trading.book", "working_order_view"),
    "write_flag_file": ("candlecast.trading.ops", "write_flag_file"),
}

__all__ = sorted(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY, globals())
