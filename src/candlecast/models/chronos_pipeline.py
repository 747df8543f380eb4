"""Chronos pipelines: a small Chronos-2 built from config (offline), or a checkpoint loaded
from a local folder or a hub id; transformers kept quiet while loading; and a traced Chronos-2
network for the serving call (one context of a fixed length)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from candlecast.models.chronos_config import CheckpointSource, ChronosConfig


def build_scratch_pipeline(config: ChronosConfig) -> Any:
    """A fresh, seeded, untrained Chronos-2 pipeline built from ``config`` (no download)."""
    from chronos.chronos2 import Chronos2CoreConfig, Chronos2Model, Chronos2Pipeline

    # config fields passed by keyword (alike in shape to the transformer's network arguments)
    core = Chronos2CoreConfig(
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        dropout_rate=config.dropout,
        initializer_factor=config.initializer_factor,
        chronos_config={
            "context_length": config.context_length,
            "input_patch_size": config.patch_size,
            "input_patch_stride": config.patch_size,
            "output_patch_size": config.patch_size,
            "quantiles": list(config.quantile_levels),
            "use_reg_token": True,
            "use_arcsinh": True,
            "max_output_patches": max(1, -(-config.horizon // config.patch_size)),
        },
        chronos_pipeline_class="Chronos2Pipeline",
        architectures=["Chronos2Model"],
    )
    torch.manual_seed(config.seed)
    model = Chronos2Model(core).eval()
    return Chronos2Pipeline(model)


def load_pipeline(source: CheckpointSource) -> Any:
    """Load a Chronos pipeline (Chronos-2, Bolt or original) from a local dir or a hub id.

    Local directories are read with ``local_files_only=True``; a hub id downloads unless the
    environment is offline (``HF_HUB_OFFLINE=1``) and then must already be in the HF cache.
    """
    from chronos import BaseChronosPipeline

    if source.location is None:
        raise ValueError("load_pipeline needs a local path or hub id, not the scratch source")
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if source.kind == "local":
        kwargs["local_files_only"] = True
    try:
        with _quiet_transformers(show=False):
            pipeline = BaseChronosPipeline.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError, AssertionError) as exc:
        raise ValueError(
            f"could not load Chronos checkpoint {source.location!r} ({source.kind}): {exc}"
        ) from exc
    pipeline.model.eval()
    return pipeline


@contextmanager
def _quiet_transformers(show: bool) -> Iterator[None]:
    """Silence transformers' progress bars, info logs and user warnings unless ``show``."""
    if show:
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


log = logging.getLogger(__name__)


class _QuantileHead(torch.nn.Module):
    """``Chronos2Model.forward`` -> ``quantile_preds`` for a fixed number of output patches and
    no covariates (what the serving call asks; an all-missing future covariate row, as
    ``Chronos2Pipeline.predict_quantiles`` passes, is the same input to the network)."""

    def __init__(self, model: torch.nn.Module, num_output_patches: int) -> None:
        super().__init__()
        self.model = model
        self.num_output_patches = num_output_patches

    def forward(self, context: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
        return self.model(context=context, group_ids=group_ids,
                          num_output_patches=self.num_output_patches).quantile_preds


def eager_quantiles(model: torch.nn.Module, context: torch.Tensor, num_output_patches: int,
                    output_patch_size: int) -> torch.Tensor:
    """The Chronos-2 network on a batch of contexts, with the tensors
    ``Chronos2Pipeline.predict_quantiles`` builds: ``(batch, quantiles, steps)``."""
    batch = context.shape[0]
    return model(
        context=context,
        group_ids=torch.arange(batch, dtype=torch.int64),
        num_output_patches=num_output_patches,
        future_covariates=torch.full((batch, num_output_patches * output_patch_size),
                                     torch.nan),
    ).quantile_preds


def probe_contexts(length: int, seed: int = 0) -> np.ndarray:
    """Contexts that exercise what a live one can hold: returns of a few sizes, missing
    history at the start, scattered gaps, a flat series, a single known value."""
    rng = np.random.default_rng(seed)
    rows = [rng.normal(0.0, scale, length) for scale in (1e-4, 1e-2, 5e-2)]
    leading = rng.normal(0.0, 1e-2, length)
    leading[: length // 2] = np.nan
    gaps = rng.normal(0.0, 1e-2, length)
    gaps[rng.choice(length, size=max(1, length // 5), replace=False)] = np.nan
    gaps[-1] = 0.003
    single = np.full(length, np.nan)
    single[-1] = -0.01
    rows += [leading, gaps, np.zeros(length), single]
    return np.asarray(rows, dtype=np.float32)


def trace_single_context(model: torch.nn.Module, context_length: int, num_output_patches: int,
                         output_patch_size: int) -> torch.jit.ScriptModule | None:
    """A TorchScript trace of the Chronos-2 network for ONE context of ``context_length``.

    The network's Python control flow depends only on shapes (checked: each traced branch is a
    shape check, plus one NaN check on covariates this call never passes), so a trace taken at
    the serving shape computes what eager mode computes, without the per-module Python
    overhead that dominates a single short context (~1 ms instead of ~3.5 ms for the
    default model). It is checked against eager mode on :func:`probe_contexts` before use;
    None (eager mode stays) if tracing fails or any probe differs beyond float32 rounding.
    ``torch.jit.trace`` is deprecated in favour of ``torch.export``, whose exported program
    refuses that NaN check and runs slower than eager on this model here.
    """
    head = _QuantileHead(model, num_output_patches).eval()
    group = torch.zeros(1, dtype=torch.int64)
    probes = torch.from_numpy(probe_contexts(context_length))
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(head, (probes[:1], group), check_trace=False)
            for i in range(len(probes)):
                context = probes[i : i + 1]
                eager = eager_quantiles(model, context, num_output_patches, output_patch_size)
                fast = traced(context, group)
                if eager.shape != fast.shape or not torch.allclose(
                    eager, fast, rtol=1e-5, atol=1e-6, equal_nan=True
                ):
                    log.warning("traced Chronos-2 differs from eager mode on probe %d; "
                                "serving stays in eager mode", i)
                    return None
    except Exception as err:  # noqa: BLE001 - any tracing failure leaves eager mode
        log.warning("could not trace the Chronos-2 network (%s); eager mode", err)
        return None
    return traced
