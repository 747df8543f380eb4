"""Feast integration: definitions of the candle feature views, apply, materialize, retrieval."""
