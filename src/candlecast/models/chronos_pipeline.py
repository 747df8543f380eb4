"""Chronos pipelines: a small Chronos-2 built from config (offline), or a checkpoint loaded
from a local folder or a hub id; transformers kept quiet while loading."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from candlecast.models.chronos_config import CheckpointSource, ChronosConfig


def build_scratch_pipeline(config: ChronosConfig) -> Any:
    """A fresh, seeded, untrained Chronos-2 pipeline built from ``config`` (no download)."""
    from chronos.chronos2 import Chronos2CoreConfig, Chronos2Model, Chronos2Pipeline

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
