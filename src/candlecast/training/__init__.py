"""Walk-forward evaluation: splits, metrics and model training helpers. Import the submodules
you need; this package imports nothing heavy."""
