"""The model registry (names -> models), persistence of zoo models, and the champion rule."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from zoo_frames import FEATURES, labelled, training_set  # noqa: E402

from candlecast.models import registry  # noqa: E402
from candlecast.models.base import FAMILIES, DirectionModel  # noqa: E402
from candlecast.models.baselines import BaselineConfig  # noqa: E402
from candlecast.models.champion import decide_champion  # noqa: E402
from candlecast.models.chronos_config import ChronosConfig  # noqa: E402


def test_unknown_or_repeated_names_fail_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown model 'xgboost'.*baselines.*transformer"):
        registry.check_model_names(["baselines", "xgboost"])
    with pytest.raises(ValueError, match="more than once"):
        registry.check_model_names(["lightgbm", "lightgbm"])
    with pytest.raises(ValueError, match="at least one"):
        registry.check_model_names([])
    assert registry.check_model_names(["chronos"]) == ("chronos",)
    assert not set(registry.RESERVED_NAMES) & set(registry.MODEL_NAMES)


def test_specs_declare_families_outputs_and_context():
    for spec in registry.MODELS.values():
        assert spec.family in FAMILIES
    assert registry.MODELS["baselines"].outputs(BaselineConfig()) == (
        "base_rate", "persistence", "momentum"
    )
    chronos = ChronosConfig(context_length=64)
    assert registry.MODELS["chronos"].context_bars(chronos, 1) == 64
    assert registry.MODELS["chronos"].context_bars(chronos, 4) == 67
    assert registry.MODELS["transformer"].context_bars({"window": 16}, 1) == 15
    assert registry.MODELS["lightgbm"].context_bars(registry.LightGBMZooConfig(), 1) == 0


def test_built_models_follow_the_protocol_and_round_trip(tmp_path):
    data = labelled(training_set(rows=1500))
    X, y = data[["series_id", "event_timestamp", *FEATURES]], data["label_up_1"]
    ctx = registry.BuildContext(fold=0, horizon=4, workdir=tmp_path / "lgbm", root=tmp_path)
    section = registry.LightGBMZooConfig(n_estimators=30, min_child_samples=30,
                                         tuning={"n_trials": 2, "n_startup_trials": 1})
    models = registry.MODELS["baselines"].build(BaselineConfig(), ctx)
    models += registry.MODELS["lightgbm"].build(section, ctx)
    assert [m.name for m in models] == ["base_rate", "persistence", "momentum", "lightgbm"]
    assert models[-1].base.horizon == 4  # the inner split is purged by the label horizon
    for model in models:
        assert isinstance(model, DirectionModel)
        model.fit(X, y)
        loaded = registry.load_model(registry.save_model(model, tmp_path / "saved" / model.name))
        np.testing.assert_allclose(loaded.predict_proba_up(X), model.predict_proba_up(X))
    assert (tmp_path / "lgbm" / "optuna.db").exists()


def test_relative_checkpoints_resolve_against_the_project_root(tmp_path):
    config = ChronosConfig(checkpoint="./weights/chronos")
    assert registry.resolve_checkpoint(config, tmp_path).checkpoint == str(
        (tmp_path / "weights" / "chronos").resolve()
    )
    assert registry.resolve_checkpoint(ChronosConfig(), tmp_path).checkpoint is None


@pytest.mark.parametrize(
    ("new", "champion", "rows", "basis", "alias", "reason"),
    [
        (0.69, None, 1000, "first", "champion", "no champion yet"),
        (0.689, 0.690, 1000, "same-window", "champion", "beats champion"),
        (0.690, 0.690, 1000, "same-window", "challenger", "does not beat"),
        (0.691, 0.690, 1000, "after-champion-training", "challenger", "does not beat"),
        (0.680, 0.690, 10, "after-champion-training", "challenger", "only 10 comparable rows"),
        (0.680, None, 0, "not-comparable", "challenger", "cannot be scored"),
        (float("nan"), 0.69, 1000, "same-window", "challenger", "no finite"),
    ],
)
def test_the_champion_moves_only_on_a_strict_improvement(new, champion, rows, basis, alias, reason):
    decision = decide_champion(new, champion, rows=rows, min_rows=500, basis=basis,
                               champion_version="3")
    assert decision.alias == alias
    assert reason in decision.reason
    assert decision.as_tags()["decision.alias"] == alias
