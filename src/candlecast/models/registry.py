"""The model zoo's registry: a model name in ``params.yaml`` -> fresh ``DirectionModel``s per fold.

Each entry of :data:`MODELS` says which direction models a name produces (``baselines`` gives
three), their family, how many past bars they read (sequence models need context), and how to
build, save and load them. Heavy libraries (torch, Chronos, LightGBM) are imported only when a
model is built or loaded, so this module is cheap to import (``config.py`` checks names here).

Unknown names fail when params are loaded (:func:`check_model_names`), before any training.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from candlecast.models.base import DirectionModel
from candlecast.models.baselines import BaselineConfig, make_baselines
from candlecast.models.chronos_config import ChronosConfig
from candlecast.models.lightgbm_model import LightGBMModelConfig
from candlecast.models.lightgbm_tuning import TuningConfig

#: Names that are stage outputs, not models: they may not be used as model names.
RESERVED_NAMES: tuple[str, ...] = ("regime", "ensemble", "simple_average")
_MANIFEST = "zoo_model.json"


class LightGBMZooConfig(LightGBMModelConfig):
    """``models.lightgbm``: the model's hyperparameters plus its Optuna ``tuning`` section."""

    tuning: TuningConfig = TuningConfig()

    def model_only(self, horizon: int) -> LightGBMModelConfig:
        """The plain model config, purging the inner split by at least ``horizon`` steps."""
        values = self.model_dump(exclude={"tuning"})
        values["horizon"] = max(values["horizon"], horizon)
        return LightGBMModelConfig(**values)


@dataclass(frozen=True)
class BuildContext:
    """What a model factory needs besides its own section of params."""

    fold: int
    #: label horizon in bars (purges inner splits; Chronos forecasts this many bars).
    horizon: int
    #: the model's output directory (the Optuna study database lives here).
    workdir: Path
    #: project root: relative checkpoint paths are resolved against it.
    root: Path


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    #: the direction models (``model`` column values) this name produces.
    outputs: Callable[[Any], tuple[str, ...]]
    build: Callable[[Any, BuildContext], list[DirectionModel]]
    #: bars of history the model reads before a row (0: the row alone).
    context_bars: Callable[[Any, int], int]


def _baselines(section: BaselineConfig, ctx: BuildContext) -> list[DirectionModel]:
    return list(make_baselines(section))


def _lightgbm(section: LightGBMZooConfig, ctx: BuildContext) -> list[DirectionModel]:
    from candlecast.models.lightgbm_tuning import TunedLightGBMModel

    ctx.workdir.mkdir(parents=True, exist_ok=True)
    storage = section.tuning.storage or f"sqlite:///{(ctx.workdir / 'optuna.db').resolve()}"
    return [
        TunedLightGBMModel(
            section.model_only(ctx.horizon), section.tuning, name="lightgbm",
            storage=storage,
            study_name=f"{section.tuning.study_prefix}-h{ctx.horizon}-fold{ctx.fold}",
        )
    ]


def resolve_checkpoint(section: ChronosConfig, root: Path) -> ChronosConfig:
    """``section`` with a relative local checkpoint path made absolute against ``root``."""
    checkpoint = section.checkpoint
    if checkpoint is None or not checkpoint.startswith(("./", "../")):
        return section
    return section.model_copy(update={"checkpoint": str((root / checkpoint).resolve())})


def _chronos(section: ChronosConfig, ctx: BuildContext) -> list[DirectionModel]:
    from candlecast.models.chronos_model import ChronosDirectionModel

    config = resolve_checkpoint(section, ctx.root)
    config = config.model_copy(update={"output_dir": None, "show_progress": False,
                                       "horizon": ctx.horizon})
    return [ChronosDirectionModel(config, name="chronos")]


def transformer_config(section: dict[str, Any], horizon: int) -> Any:
    """The transformer's config from its params section, purging at least ``horizon`` rows."""
    from candlecast.models.transformer import TransformerConfig

    config = TransformerConfig(**section)
    return config.model_copy(update={"purge": max(config.purge, horizon), "checkpoint_dir": None})


def _transformer(section: dict[str, Any], ctx: BuildContext) -> list[DirectionModel]:
    from candlecast.models.transformer import TransformerDirectionModel

    return [TransformerDirectionModel(transformer_config(section, ctx.horizon), name="transformer")]


def _transformer_context(section: dict[str, Any], horizon: int) -> int:
    return int(section.get("window", 32)) - 1


MODELS: dict[str, ModelSpec] = {
    "baselines": ModelSpec(
        "baselines", "baseline", lambda s: ("base_rate", "persistence", "momentum"),
        _baselines, lambda s, h: 0,
    ),
    "lightgbm": ModelSpec(
        "lightgbm", "gbm", lambda s: ("lightgbm",), _lightgbm, lambda s, h: 0,
    ),
    "chronos": ModelSpec(
        "chronos", "foundation", lambda s: ("chronos",), _chronos,
        lambda s, h: s.context_length + h - 1,
    ),
    "transformer": ModelSpec(
        "transformer", "neural", lambda s: ("transformer",), _transformer, _transformer_context,
    ),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def check_model_names(names: Sequence[str], where: str = "models.run") -> tuple[str, ...]:
    """``names`` as a tuple, or a ``ValueError`` naming the unknown or repeated one."""
    names = tuple(names)
    if not names:
        raise ValueError(f"{where} must name at least one model; expected some of {list(MODELS)}")
    for name in names:
        if name not in MODELS:
            raise ValueError(
                f"{where}: unknown model {name!r}; expected some of {sorted(MODELS)}"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{where} names {repeated} more than once")
    return names


def spec(name: str) -> ModelSpec:
    check_model_names([name], "model name")
    return MODELS[name]


# --------------------------------------------------------------------------- persistence


def save_model(model: DirectionModel, directory: Path) -> Path:
    """Persist a fitted zoo model in ``directory`` with a manifest saying how to load it."""
    directory.mkdir(parents=True, exist_ok=True)
    kind = type(model).__name__
    if kind in ("TunedLightGBMModel", "LightGBMDirectionModel"):
        model.save(str(directory / "lightgbm"))  # type: ignore[attr-defined]
        kind = "lightgbm"
    elif kind == "ChronosDirectionModel":
        model.save(directory / "chronos")  # type: ignore[attr-defined]
        kind = "chronos"
    elif kind == "TransformerDirectionModel":
        model.save(directory / "transformer.pt")  # type: ignore[attr-defined]
        kind = "transformer"
    else:
        joblib.dump(model, directory / "model.joblib")
        kind = "joblib"
    manifest = {"kind": kind, "name": model.name, "family": getattr(model, "family", "")}
    (directory / _MANIFEST).write_text(json.dumps(manifest, indent=2))
    return directory


def load_model(directory: Path) -> DirectionModel:
    """The fitted model :func:`save_model` wrote to ``directory``."""
    manifest = json.loads((directory / _MANIFEST).read_text())
    kind = manifest["kind"]
    if kind == "lightgbm":
        from candlecast.models.lightgbm_model import LightGBMDirectionModel

        return LightGBMDirectionModel.load(directory / "lightgbm")
    if kind == "chronos":
        from candlecast.models.chronos_model import ChronosDirectionModel

        return ChronosDirectionModel.load(directory / "chronos")
    if kind == "transformer":
        from candlecast.models.transformer import TransformerDirectionModel

        return TransformerDirectionModel.load(directory / "transformer.pt")
    if kind == "joblib":
        return joblib.load(directory / "model.joblib")
    raise ValueError(f"{directory}: unknown saved model kind {kind!r}")
