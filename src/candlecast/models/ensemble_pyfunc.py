"""The deployable ensemble as an MLflow pyfunc model (what ``candlecast-ensemble`` versions hold).

Input: recent feature rows (``series_id``, ``event_timestamp`` as tz-naive UTC -- MLflow's
``datetime`` type has no zone and rejects tz-aware values -- and the feature columns), at
least ``window_rows`` per series for the sequence models' context (declared in the model's
metadata as ``{"candlecast": {"window_rows": N, "horizons": [...], "policy": {...}, ...}}``).
Output, for the last row of each series (``params={"rows": "all"}``: for every row):
``series_id, event_timestamp``, per horizon ``prob_up_<h>`` (calibrated) and ``exp_ret_<h>``,
``volatility``, and the primary horizon's ``prob_up``, ``confidence``, ``disagreement``,
``prob_mean`` (the simple average), each base model's ``prob_<model>`` and the extra inputs
(``garch_vol``, ``regime_<k>``, ``chronos_spread``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel


class EnsemblePyfunc(PythonModel):
    """Loads a saved :class:`~candlecast.models.ensemble.Ensemble` artifact folder."""

    def load_context(self, context: Any) -> None:
        from candlecast.models.ensemble import Ensemble

        self.ensemble = Ensemble.load(context.artifacts["ensemble"])
        threads = int(self.ensemble.primary.manifest.get("torch_threads", 0) or 0)
        if threads:
            import torch

            torch.set_num_threads(threads)

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - MLflow reads
        # type hints as an input schema; the signature logged with the model is the schema
        rows = (params or {}).get("rows", "last")
        return self.ensemble.predict(pd.DataFrame(model_input), rows=rows)
