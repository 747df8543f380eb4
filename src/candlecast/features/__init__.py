"""Candle features and labels: one definition, computed in batch and incrementally.

* :func:`compute_features` / :func:`compute_features_multi` -- vectorised, whole history;
* :class:`IncrementalFeatureEngine` -- one closed candle at a time, O(1) persistable state,
  identical numbers (tested);
* :func:`make_labels` / :func:`make_labels_multi` -- forward returns and direction labels.

See ``docs/features.md`` for every definition, warm-up and gap rule.
"""

from candlecast.features.batch import compute_features, compute_features_multi
from candlecast.features.config import (
    AUX_COLUMNS,
    ID_COLUMNS,
    FeatureConfig,
    feature_names,
    first_valid_age,
    output_columns,
    priming_bars,
    warmup_bars,
)
from candlecast.features.engine import IncrementalFeatureEngine
from candlecast.features.labels import LabelConfig, label_names, make_labels, make_labels_multi

__all__ = [
    "AUX_COLUMNS",
    "ID_COLUMNS",
    "FeatureConfig",
    "IncrementalFeatureEngine",
    "LabelConfig",
    "compute_features",
    "compute_features_multi",
    "feature_names",
    "first_valid_age",
    "label_names",
    "make_labels",
    "make_labels_multi",
    "output_columns",
    "priming_bars",
    "warmup_bars",
]
