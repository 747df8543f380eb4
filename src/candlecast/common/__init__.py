"""Small helpers every package may depend on (no candlecast imports here)."""
