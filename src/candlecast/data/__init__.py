"""Candles: the canonical table, its Parquet store, and the sources that fill it."""

from candlecast.data.schema import CANDLE_COLUMNS, PRICE_COLUMNS, SeriesId, timeframe_to_timedelta
from candlecast.data.store import CandleStore

__all__ = ["CANDLE_COLUMNS", "PRICE_COLUMNS", "CandleStore", "SeriesId", "timeframe_to_timedelta"]
