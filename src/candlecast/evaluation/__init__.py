"""How a direction forecast is judged out of sample: purged, embargoed time splits
(``splits``: walk-forward folds, inner chronological splits) and the metrics (``metrics``: log
loss, AUC, IC, calibration, sign PnL; tidy tables). Pure and below ``models``, so a model's own
inner validation and the walk-forward driver in ``training`` use the same splits and scores.
Import the submodules you need; this package imports nothing."""
