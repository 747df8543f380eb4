"""Exchange access: the only package that imports ccxt.

``errors`` and ``retry`` are ccxt-free and cheap to import. The ccxt adapter
(:mod:`candlecast.exchange.ccxt_source`) is imported lazily on first use of ``CcxtOhlcvSource``,
``create_exchange``, ``override_api_urls`` or ``available_exchanges`` (and the order gateway of
:mod:`candlecast.exchange.orders` on first use of ``CcxtOrderGateway``), because importing ccxt
loads every exchange module (seconds of CPU) and most callers of this package never need it.
"""

from __future__ import annotations

import importlib
from typing import Any

from candlecast.exchange.errors import (
    ExchangeRequestError,
    OrderWouldTakeError,
    PermanentExchangeError,
    RetriesExhaustedError,
    TransientExchangeError,
    UnknownExchangeError,
)
from candlecast.exchange.retry import BackoffPolicy, Retrier, RetryEvent
from candlecast.exchange.source import Candle, OhlcvSource

_LAZY = {"CcxtOhlcvSource", "available_exchanges", "create_exchange", "override_api_urls"}
# authenticated order calls (candlecast.exchange.orders), also loaded lazily
_LAZY_ORDERS = {"CcxtOrderGateway", "MarketRules", "OrderSnapshot", "translate_ccxt_error"}

__all__ = [
    "BackoffPolicy",
    "Candle",
    "CcxtOhlcvSource",
    "CcxtOrderGateway",
    "ExchangeRequestError",
    "MarketRules",
    "OhlcvSource",
    "OrderSnapshot",
    "OrderWouldTakeError",
    "PermanentExchangeError",
    "Retrier",
    "RetriesExhaustedError",
    "RetryEvent",
    "TransientExchangeError",
    "UnknownExchangeError",
    "available_exchanges",
    "create_exchange",
    "override_api_urls",
    "translate_ccxt_error",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("candlecast.exchange.ccxt_source"), name)
    if name in _LAZY_ORDERS:
        return getattr(importlib.import_module("candlecast.exchange.orders"), name)
    raise AttributeError(f"module 'candlecast.exchange' has no attribute {name!r}")
