"""Configuration of the Chronos direction model, and where its weights come from.

Three sources, one ``checkpoint`` field:

* ``None`` / ``"scratch"`` (the offline default): a small Chronos-2 built from
  :class:`ChronosConfig`'s architecture fields (about 140k parameters by default) and trained on
  each training fold with ``Chronos2Pipeline.fit``. Needs no download.
* a local directory written by ``save_pretrained`` (a Chronos-2, Chronos-Bolt or Chronos
  checkpoint): loaded with ``local_files_only=True``, so it never touches the network.
* a Hugging Face hub id such as ``amazon/chronos-2`` or ``amazon/chronos-bolt-small``, for
  users with internet (or with the model already in their HF cache).

:func:`check_checkpoint` validates the field before any training so a missing path or a
directory that is not a Chronos model fails with one clear message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Quantile levels the scratch model is trained to output (a subset of Chronos-2's 21 levels).
DEFAULT_QUANTILES: tuple[float, ...] = (0.01, 0.05, *(k / 10 for k in range(1, 10)), 0.95, 0.99)
SCRATCH = "scratch"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class ChronosConfig(BaseModel):
    """Everything the Chronos direction model needs; defaults suit 2 CPU cores.

    Data: ``return_column`` is the past one-step log return of each row (known at the row's
    decision time); the model sees the ``context_length`` most recent values of the row's own
    series and forecasts the sum of the next ``horizon`` returns.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: None or "scratch" = build a small Chronos-2 from the fields below; else a hub id
    #: (``amazon/chronos-2``) or a local checkpoint directory (prefix relative paths with ./).
    checkpoint: str | None = None
    #: True: train on each training fold (``Chronos2Pipeline.fit``; Chronos-2 checkpoints only).
    #: False: zero-shot with the loaded weights (requires a checkpoint).
    finetune: bool = True
    return_column: str = "logret_1"
    #: Series key column (None: the frame is a single series).
    series_column: str | None = "series_id"
    #: Optional timestamp column; when present in X the context follows real time (gaps = NaN).
    timestamp_column: str | None = "event_timestamp"
    horizon: int = Field(default=1, ge=1, le=64)
    context_length: int = Field(default=64, ge=8, le=8192)

    # Architecture of the scratch model (ignored when a checkpoint is loaded).
    d_model: int = Field(default=64, ge=8)
    d_kv: int = Field(default=16, ge=4)
    d_ff: int = Field(default=128, ge=8)
    num_layers: int = Field(default=2, ge=1, le=12)
    num_heads: int = Field(default=4, ge=1)
    patch_size: int = Field(default=8, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: Weight-init scale (Chronos-2 uses 0.05 for its long pretraining; a model trained for a
    #: few hundred steps from scratch leaves its initial plateau reliably at 0.3).
    initializer_factor: float = Field(default=0.3, gt=0.0)
    quantile_levels: tuple[float, ...] = DEFAULT_QUANTILES

    # Training (Chronos2Pipeline.fit).
    num_steps: int = Field(default=300, ge=1)
    #: None: 3e-3 for the scratch model, 1e-5 when fine-tuning pretrained weights.
    learning_rate: float | None = Field(default=None, gt=0.0)
    batch_size: int = Field(default=64, ge=1)
    #: Shortest context a training window may have.
    min_past: int = Field(default=16, ge=1)
    #: With X_val: evaluate every N steps and keep the best (lowest quantile loss) weights.
    eval_every_steps: int = Field(default=100, ge=1)
    #: At most this many validation windows (evenly spaced over X_val).
    max_val_windows: int = Field(default=256, ge=1)
    #: Where fit writes checkpoints; None = a temporary directory removed after fit.
    output_dir: Path | None = None
    show_progress: bool = False
    seed: int = 0

    # Prediction.
    predict_batch_size: int = Field(default=512, ge=1)
    #: Quantile levels whose difference is reported as the forecast spread.
    spread_levels: tuple[float, float] = (0.1, 0.9)

    @field_validator("checkpoint")
    @classmethod
    def _normalise_checkpoint(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", SCRATCH):
            return None
        return value.strip()

    @field_validator("quantile_levels")
    @classmethod
    def _check_levels(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if len(levels) < 3 or any(not 0.0 < q < 1.0 for q in levels):
            raise ValueError(f"quantile_levels must be >= 3 levels in (0, 1), got {levels}")
        if list(levels) != sorted(set(levels)):
            raise ValueError(f"quantile_levels must be strictly increasing, got {levels}")
        return levels

    @model_validator(mode="after")
    def _check_consistency(self) -> ChronosConfig:
        if self.checkpoint is None and not self.finetune:
            raise ValueError(
                "checkpoint=None builds an untrained Chronos-2 from config; it must be trained "
                "(finetune=True) or a checkpoint must be given for zero-shot use"
            )
        if self.context_length % self.patch_size:
            raise ValueError(
                f"context_length ({self.context_length}) must be a multiple of patch_size "
                f"({self.patch_size})"
            )
        if self.min_past > self.context_length:
            raise ValueError(
                f"min_past ({self.min_past}) must not exceed context_length ({self.context_length})"
            )
        lo, hi = self.spread_levels
        if not 0.0 < lo < hi < 1.0:
            raise ValueError(
                f"spread_levels must satisfy 0 < lo < hi < 1, got {self.spread_levels}"
            )
        return self

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 3e-3 if self.checkpoint is None else 1e-5


@dataclass(frozen=True)
class CheckpointSource:
    """Where the weights come from: ``kind`` is "scratch", "local" or "hub"."""

    kind: Literal["scratch", "local", "hub"]
    location: str | None
    #: For hub ids: whether the config is already in the local HF cache (usable offline).
    cached: bool = False


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", ".", "~"))
        or "\\" in value
        or value.count("/") != 1
        or not _HUB_ID.match(value)
    )


def check_checkpoint(checkpoint: str | None) -> CheckpointSource:
    """Validate a ``checkpoint`` value without loading weights or touching the network.

    A local directory must hold a ``config.json`` with a ``chronos_config`` (or
    ``chronos_pipeline_class``) entry and a weights file; a hub id must look like
    ``owner/name``. Raises ``ValueError`` with the reason otherwise.
    """
    if checkpoint is None or checkpoint.strip().lower() in ("", SCRATCH):
        return CheckpointSource("scratch", None)
    path = Path(checkpoint).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"Chronos checkpoint {checkpoint!r} is a file; expected a directory")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ValueError(f"Chronos checkpoint {checkpoint!r} has no config.json")
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"Chronos checkpoint {checkpoint!r}: config.json is not JSON: {exc}"
            ) from exc
        if not isinstance(config, dict) or not (
            "chronos_config" in config or "chronos_pipeline_class" in config
        ):
            raise ValueError(
                f"{checkpoint!r} is not a Chronos model: its config.json has no 'chronos_config'"
            )
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            raise ValueError(
                f"Chronos checkpoint {checkpoint!r} has no weights "
                f"(expected one of {', '.join(_WEIGHT_FILES)})"
            )
        return CheckpointSource("local", str(path))
    if _looks_like_path(checkpoint):
        raise ValueError(
            f"Chronos checkpoint path {checkpoint!r} does not exist (hub ids look like "
            "'amazon/chronos-2'; prefix relative paths with './')"
        )
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(checkpoint, "config.json"), str)
    return CheckpointSource("hub", checkpoint, cached=cached)
