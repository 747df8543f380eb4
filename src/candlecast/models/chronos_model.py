"""Chronos as a direction model: a quantile forecast of the next return, read as P(up).

For each row the model sees the ``context_length`` most recent one-step log returns of the row's
own series (the row's own return included, nothing after it; see
:mod:`candlecast.models.sequence_windows`) and forecasts quantiles of the return over the next
``horizon`` candles. From those quantiles:

* ``P(up) = 1 - F(0)``, with ``F`` the piecewise-linear CDF through the (value, level) knots
  (:func:`prob_up_from_quantiles`);
* the spread ``q_hi - q_lo`` (default q90 - q10), a forecast-uncertainty input for the ensemble
  and for position sizing.

Weights come from :mod:`candlecast.models.chronos_config`: a small Chronos-2 built from config
and trained per fold with ``Chronos2Pipeline.fit`` (offline default), or a hub id / local
checkpoint used zero-shot or fine-tuned.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from candlecast.models.base import (
    NotFittedError,
    check_fit_inputs,
    quantile_column,
    require_columns,
)
from candlecast.models.chronos_config import ChronosConfig, check_checkpoint
from candlecast.models.chronos_pipeline import (
    _quiet_transformers,
    build_scratch_pipeline,
    eager_quantiles,
    load_pipeline,
    trace_single_context,
)
from candlecast.models.quantiles import interpolate_quantiles, prob_up_from_quantiles
from candlecast.models.sequence_windows import (
    gather_windows,
    last_window,
    latest_rows,
    series_grids,
    window_index,
)

_CONFIG_FILE = "candlecast_chronos.json"
_WEIGHTS_DIR = "pipeline"


def _rolling_sum(values: np.ndarray, width: int) -> np.ndarray:
    """Trailing sums of ``width`` along the last axis; the output is ``width - 1`` shorter."""
    if width == 1:
        return values
    return sliding_window_view(values, width, axis=-1).sum(axis=-1)


# --------------------------------------------------------------------------- the model


class ChronosDirectionModel:
    """P(up) and forecast spread from a Chronos quantile forecast (a ``DirectionModel``).

    ``fit`` trains the scratch model (or fine-tunes a Chronos-2 checkpoint) on the return
    series of the training rows, self-supervised: ``y`` is checked but not used, so the label's
    horizon must equal ``config.horizon``. With ``finetune=False`` fit only loads the weights
    (zero-shot). ``X_val`` windows select the best weights (lowest validation quantile loss).
    """

    family = "foundation"

    def __init__(self, config: ChronosConfig | None = None, *, name: str = "chronos") -> None:
        self.config = config or ChronosConfig()
        self.name = name
        self.source = check_checkpoint(self.config.checkpoint)
        self._loaded: Any = None  # weights loaded from a checkpoint, reused across fits
        self._pipeline: Any = None
        self._context_cap: int | None = None  # the loaded model's own context limit
        self._traced: Any = None  # the network traced for one context (see accelerate)

    # ---------------------------------------------------------------- data -> model inputs

    @property
    def context_length(self) -> int:
        return min(self.config.context_length, self._context_cap or self.config.context_length)

    def _returns(self, X: pd.DataFrame) -> np.ndarray:
        require_columns(X, [self.config.return_column], f"model {self.name!r}")
        return X[self.config.return_column].to_numpy(dtype=np.float64)

    def contexts(self, X: pd.DataFrame) -> np.ndarray:
        """``(len(X), context_length)`` float32 contexts, row ``i`` ending at row ``i``.

        Each is the (``horizon``-summed) return history of the row's series; slots without a
        candle in ``X`` are NaN, which Chronos treats as missing.
        """
        return self._contexts(X, latest_only=False)[0]

    def _contexts(self, X: pd.DataFrame, latest_only: bool) -> tuple[np.ndarray, np.ndarray]:
        """Contexts of every row (or of each series' latest row) and the rows they end at."""
        cfg = self.config
        returns = self._returns(X)
        grids = series_grids(X, cfg.series_column, cfg.timestamp_column)
        index = window_index(grids, len(X), self.context_length + cfg.horizon - 1)
        rows = latest_rows(grids) if latest_only else np.arange(len(X))
        windows = gather_windows(returns, index[rows], np.nan)
        return _rolling_sum(windows, cfg.horizon).astype(np.float32), rows

    def latest_context(self, returns: np.ndarray, ns: np.ndarray | None) -> np.ndarray:
        """``(1, context_length)`` float32 context of the LATEST row of ONE series given as
        arrays (``returns`` per row, ``ns`` int64 timestamps or None for consecutive rows):
        the row :meth:`contexts` builds for it from a frame of the same rows."""
        cfg = self.config
        length = self.context_length + cfg.horizon - 1
        use_time = cfg.timestamp_column is not None and ns is not None
        index = last_window(ns if use_time else None, len(returns), length,
                            column=cfg.timestamp_column or "timestamp")
        windows = gather_windows(np.asarray(returns, dtype=np.float64), index[None, :], np.nan)
        return _rolling_sum(windows, cfg.horizon).astype(np.float32)

    def quantiles_of(self, contexts: np.ndarray) -> tuple[list[float], np.ndarray]:
        """Native quantile levels and the ``horizon``-step quantile forecast ``(n, levels)``
        (float64) of each context (every one assumed usable: see ``min_past``).

        One context on a Chronos-2 pipeline goes straight to the network with the tensors
        ``Chronos2Pipeline.predict_quantiles`` would build for it (its dataset and loader cost
        more than the forward pass on a single short context); the result is the same
        (tested bit for bit). Anything else goes through ``predict_quantiles``.
        """
        from chronos.chronos2 import Chronos2Pipeline

        pipeline = self._require_fitted()
        cfg = self.config
        levels = [float(q) for q in (getattr(pipeline, "quantiles", None) or cfg.quantile_levels)]
        if len(contexts) == 0:
            return levels, np.empty((0, len(levels)))
        if not isinstance(pipeline, Chronos2Pipeline):
            return self._quantiles_by_pipeline(pipeline, levels, contexts)
        patch = int(pipeline.model_output_patch_size)
        patches = -(-cfg.horizon // patch)
        direct = (
            len(contexts) == 1
            and contexts.shape[1] <= int(pipeline.model_context_length)
            and patches <= int(pipeline.max_output_patches)
            and list(pipeline.quantiles) == levels
        )
        if not direct:
            return self._quantiles_by_pipeline(pipeline, levels, contexts)
        with torch.inference_mode():
            context = torch.from_numpy(np.ascontiguousarray(contexts, dtype=np.float32))
            traced = self._traced
            if traced is not None and contexts.shape == (1, self.context_length):
                out = traced(context, torch.zeros(1, dtype=torch.int64))
            else:
                out = eager_quantiles(pipeline.model, context, patches, patch)
            out = out.to(context)
            # (1, quantiles, horizon) -> the forecast of the horizon's last step
            values = out[:, :, cfg.horizon - 1].numpy()
        return levels, values.astype(np.float64)

    def accelerate(self) -> bool:
        """Trace the Chronos-2 network for the serving call, one context of
        :attr:`context_length` (see :func:`~candlecast.models.chronos_pipeline.
        trace_single_context`); :meth:`quantiles_of` then uses it for such a context. Checked
        against eager mode first; returns whether the trace is in use. A later :meth:`fit`
        drops it. Not saved with the model."""
        from chronos.chronos2 import Chronos2Pipeline

        pipeline = self._require_fitted()
        self._traced = None
        if not isinstance(pipeline, Chronos2Pipeline):
            return False
        patch = int(pipeline.model_output_patch_size)
        patches = -(-self.config.horizon // patch)
        if self.context_length > int(pipeline.model_context_length) or \
                patches > int(pipeline.max_output_patches):
            return False
        self._traced = trace_single_context(pipeline.model, self.context_length, patches, patch)
        return self._traced is not None

    def _quantiles_by_pipeline(
        self, pipeline: Any, levels: list[float], contexts: np.ndarray
    ) -> tuple[list[float], np.ndarray]:
        from chronos.chronos2 import Chronos2Pipeline

        cfg = self.config
        step = cfg.horizon - 1
        with torch.inference_mode():
            if isinstance(pipeline, Chronos2Pipeline):
                quantiles, _ = pipeline.predict_quantiles(
                    contexts[:, None, :],
                    prediction_length=cfg.horizon,
                    quantile_levels=levels,
                    batch_size=cfg.predict_batch_size,
                    context_length=contexts.shape[1],
                )
                values = torch.stack(quantiles)[:, 0, step, :].numpy()
            else:  # Chronos-Bolt / original Chronos: batched tensors of shape (batch, context)
                parts = []
                for start in range(0, len(contexts), cfg.predict_batch_size):
                    batch = torch.from_numpy(contexts[start : start + cfg.predict_batch_size])
                    q, _ = pipeline.predict_quantiles(
                        batch, prediction_length=cfg.horizon, quantile_levels=levels
                    )
                    parts.append(q[:, step, :].numpy())
                values = np.concatenate(parts)
        return levels, values.astype(np.float64)

    def _target_series(self, X: pd.DataFrame) -> list[np.ndarray]:
        """Per series, the (horizon-summed) returns on its time grid; NaN in gaps."""
        cfg = self.config
        returns = self._returns(X)
        out = []
        for grid in series_grids(X, cfg.series_column, cfg.timestamp_column):
            series = grid.on_grid(returns)
            if cfg.horizon > 1:
                padded = np.concatenate([np.full(cfg.horizon - 1, np.nan), series])
                series = _rolling_sum(padded, cfg.horizon)
            out.append(series.astype(np.float32))
        return out

    def _validation_windows(self, X_val: pd.DataFrame) -> np.ndarray:
        """Up to ``max_val_windows`` windows (k, 1, context + horizon), evenly spaced."""
        cfg, length = self.config, self.context_length + self.config.horizon
        windows = []
        for series in self._target_series(X_val):
            padded = np.concatenate([np.full(length - 1, np.nan, dtype=np.float32), series])
            ends = np.arange(cfg.min_past + cfg.horizon - 1, len(series))
            windows.append(sliding_window_view(padded, length)[ends])
        stacked = np.concatenate(windows) if windows else np.empty((0, length), np.float32)
        usable = stacked[~np.isnan(stacked[:, -cfg.horizon :]).all(axis=1)]
        if len(usable) == 0:
            raise ValueError(
                f"validation set too short: no window with {cfg.min_past} past and "
                f"{cfg.horizon} future returns"
            )
        pick = np.unique(np.linspace(0, len(usable) - 1, cfg.max_val_windows).round().astype(int))
        return usable[pick][:, None, :]

    # ---------------------------------------------------------------- fit

    def _base_pipeline(self) -> Any:
        if self.source.kind == "scratch":
            return build_scratch_pipeline(self.config)
        if self._loaded is None:
            self._loaded = load_pipeline(self.source)
        return self._loaded

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_val: pd.DataFrame | None = None,
        y_val: pd.Series | None = None,
    ) -> Self:
        from chronos.chronos2 import Chronos2Pipeline

        cfg = self.config
        check_fit_inputs(X, y)
        if X_val is not None and y_val is not None:
            check_fit_inputs(X_val, y_val, "validation")
        self._pipeline = self._traced = None
        series = self._target_series(X)
        base = self._base_pipeline()
        self._context_cap = int(base.model_context_length)
        if not cfg.finetune:
            self._pipeline = base
            return self
        if not isinstance(base, Chronos2Pipeline):
            raise ValueError(
                f"fine-tuning needs a Chronos-2 checkpoint; {cfg.checkpoint!r} loaded a "
                f"{type(base).__name__} (use finetune=False for zero-shot)"
            )
        min_len = cfg.min_past + cfg.horizon
        series = [s for s in series if (~np.isnan(s)).sum() >= min_len]
        if not series:
            raise ValueError(
                f"training set too short: every series has fewer than min_past + horizon = "
                f"{min_len} returns"
            )
        validation = self._validation_windows(X_val) if X_val is not None else None
        extra: dict[str, Any] = {"seed": cfg.seed, "data_seed": cfg.seed, "use_cpu": True}
        if not cfg.show_progress:
            extra.update(disable_tqdm=True, logging_strategy="no")
        if validation is not None:
            extra.update(eval_steps=cfg.eval_every_steps, save_steps=cfg.eval_every_steps)
        with _output_dir(cfg.output_dir) as out, _quiet_transformers(cfg.show_progress):
            from transformers import set_seed

            set_seed(cfg.seed)
            tuned = base.fit(
                series,
                prediction_length=cfg.horizon,
                validation_inputs=validation,
                context_length=self.context_length,
                learning_rate=cfg.effective_learning_rate,
                num_steps=cfg.num_steps,
                batch_size=cfg.batch_size,
                min_past=cfg.min_past,
                output_dir=out,
                remove_printer_callback=not cfg.show_progress,
                **extra,
            )
        tuned.model.eval()
        self._pipeline = tuned
        return self

    # ---------------------------------------------------------------- predict

    @property
    def pipeline(self) -> Any:
        """The fitted (or loaded, zero-shot) Chronos pipeline, e.g. for ``save_pretrained``."""
        return self._require_fitted()

    def _require_fitted(self) -> Any:
        if self._pipeline is None:
            raise NotFittedError(f"model {self.name!r} must be fit before predicting")
        return self._pipeline

    def _forecast(
        self, X: pd.DataFrame, latest_only: bool = False
    ) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
        """Native quantile levels, forecasts of the rows with enough history, that mask over
        the forecast rows, and those rows' positions in ``X``.

        A row needs at least ``min_past`` observed returns in its context; with fewer (the
        first rows of a series in ``X``) a forecast would be read off a near-constant context,
        so the row gets none.
        """
        contexts, rows = self._contexts(X, latest_only)
        usable = (~np.isnan(contexts)).sum(axis=1) >= self.config.min_past
        levels, values = self.forecast_contexts(contexts[usable])
        return levels, values, usable, rows

    def forecast_contexts(self, contexts: np.ndarray) -> tuple[list[float], np.ndarray]:
        """Native quantile levels and the ``horizon``-step quantile forecast ``(n, levels)`` of
        each context through the pipeline's batched ``predict_quantiles`` (the frame paths;
        :meth:`quantiles_of` is the one-context serving call)."""
        pipeline = self._require_fitted()
        cfg = self.config
        levels = [float(q) for q in (getattr(pipeline, "quantiles", None) or cfg.quantile_levels)]
        if len(contexts) == 0:
            return levels, np.empty((0, len(levels)))
        return self._quantiles_by_pipeline(pipeline, levels, contexts)

    def forecast_quantiles(self, X: pd.DataFrame) -> tuple[list[float], np.ndarray]:
        """The model's native quantile levels and its forecast ``(len(X), n_levels)`` of the
        ``horizon``-step log return after each row; NaN rows lack history (see ``min_past``)."""
        levels, values, usable, _ = self._forecast(X)
        out = np.full((len(usable), len(levels)), np.nan)
        out[usable] = values
        return levels, out

    def predict_proba_up(self, X: pd.DataFrame) -> np.ndarray:
        """P(next ``horizon``-step return > 0); 0.5 for rows without ``min_past`` history."""
        levels, values, usable, _ = self._forecast(X)
        out = np.full(len(usable), 0.5)
        out[usable] = prob_up_from_quantiles(levels, values)
        return out

    def predict_return_quantiles(
        self, X: pd.DataFrame, quantiles: Sequence[float] = (0.1, 0.5, 0.9)
    ) -> pd.DataFrame:
        """Forecast quantiles of the ``horizon``-step log return, columns ``q0.1``-style; NaN
        for rows without ``min_past`` history."""
        levels, values, usable, _ = self._forecast(X)
        table = np.full((len(usable), len(quantiles)), np.nan)
        table[usable] = interpolate_quantiles(levels, values, quantiles)
        return pd.DataFrame(table, index=X.index, columns=[quantile_column(q) for q in quantiles])

    def predict_forecast(self, X: pd.DataFrame) -> pd.DataFrame:
        """One forward pass, everything downstream needs, row-aligned with ``X``: ``p_up``,
        ``spread`` (q_hi - q_lo of ``spread_levels``), ``median`` return and ``has_context``.
        Rows without history get ``p_up`` 0.5 and NaN spread/median."""
        return self._forecast_frame(X, self._forecast(X))

    def predict_latest(self, X: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict_forecast` for the latest row of each series only, the rest of ``X``
        serving as its history (live inference: one model call per decision)."""
        return self._forecast_frame(X, self._forecast(X, latest_only=True))

    def _forecast_frame(
        self, X: pd.DataFrame, forecast: tuple[list[float], np.ndarray, np.ndarray, np.ndarray]
    ) -> pd.DataFrame:
        levels, values, usable, rows = forecast
        lo, hi = self.config.spread_levels
        table = np.full((len(usable), 3), np.nan)
        table[:, 0] = 0.5
        q = interpolate_quantiles(levels, values, (lo, 0.5, hi))
        table[usable, 0] = prob_up_from_quantiles(levels, values)
        table[usable, 1] = q[:, 2] - q[:, 0]
        table[usable, 2] = q[:, 1]
        frame = pd.DataFrame(table, index=X.index[rows], columns=["p_up", "spread", "median"])
        frame["has_context"] = usable
        return frame

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        """Write the fitted weights (``save_pretrained``) and the config to ``directory``."""
        pipeline = self._require_fitted()
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers(show=False):
            pipeline.save_pretrained(target / _WEIGHTS_DIR)
        payload = {"name": self.name, "config": self.config.model_dump(mode="json")}
        (target / _CONFIG_FILE).write_text(json.dumps(payload, indent=2))
        return target

    @classmethod
    def load(cls, directory: str | Path) -> ChronosDirectionModel:
        """A fitted model from :meth:`save`'s output; reads local files only.

        The saved weights become the model's ``checkpoint``, so a later ``fit`` fine-tunes them
        (or, with ``finetune=False``, just reloads them).
        """
        source = Path(directory)
        payload = json.loads((source / _CONFIG_FILE).read_text())
        weights = str((source / _WEIGHTS_DIR).resolve())
        config = ChronosConfig(**{**payload["config"], "checkpoint": weights})
        model = cls(config, name=payload["name"])
        model._loaded = model._pipeline = load_pipeline(model.source)
        model._context_cap = int(model._pipeline.model_context_length)
        return model


@contextmanager
def _output_dir(configured: Path | None) -> Iterator[Path]:
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="candlecast-chronos-") as tmp:
        yield Path(tmp)
