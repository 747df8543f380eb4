"""Direction models (baselines, gradient boosting, Chronos, transformer), the volatility/regime
models and the stacked ensemble. Import the submodules you need; this package imports nothing."""
