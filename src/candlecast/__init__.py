"""candlecast: reproducible research and live signals for crypto candles."""

__version__ = "0.1.0"
