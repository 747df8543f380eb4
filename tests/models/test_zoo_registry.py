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
from candlecast.models.champion import ModelScore, decide_champion  # noqa: E402
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


def _score(sharpe, log_loss=0.690, bars=1000, calmar=None):
    return ModelScore(sharpe, sharpe if calmar is None else calmar, log_loss, bars)


@pytest.mark.parametrize(
    ("new", "champion", "basis", "alias", "reason"),
    [
        (_score(1.0), None, "first", "champion", "no champion yet"),
        (_score(1.2), _score(1.0), "same-window", "champion", "beats champion"),
        (_score(1.0), _score(1.0), "same-window", "challenger", "does not beat"),
        # the stored score's 12 digits: a recomputation of the same run is not an improvement
        (_score(4.68000000000003), _score(4.68), "same-window", "challenger", "does not beat"),
        (_score(0.9), _score(1.0), "after-champion-training", "challenger", "does not beat"),
        (_score(2.0, bars=10), _score(1.0), "after-champion-training", "challenger",
         "only 10 comparable bars"),
        (_score(2.0), None, "not-comparable", "challenger", "cannot be scored"),
        (_score(float("nan")), _score(1.0), "same-window", "challenger", "no finite"),
        # log loss is a guard: never worse than a coin flip, never much worse than the champion
        (_score(3.0, log_loss=0.70), None, "first", "challenger", "log loss guard"),
        (_score(3.0, log_loss=0.6935), _score(1.0, log_loss=0.685), "same-window",
         "challenger", "log loss guard"),
    ],
)
def test_the_champion_moves_only_on_a_strict_improvement(new, champion, basis, alias, reason):
    decision = decide_champion(new, champion, criterion="sharpe", min_bars=500, basis=basis,
                               max_log_loss=0.694, log_loss_tolerance=0.005,
                               champion_version="3")
    assert decision.alias == alias
    assert reason in decision.reason
    assert decision.as_tags()["decision.alias"] == alias


def test_the_champion_rule_promotes_the_better_net_sharpe_not_the_better_log_loss():
    rule = {"min_bars": 500, "basis": "same-window", "max_log_loss": 0.694,
            "log_loss_tolerance": 0.005, "champion_version": "1"}
    champion = _score(0.4, log_loss=0.6880)
    earns_more = _score(1.1, log_loss=0.6900)  # worse log loss (inside the guard), pays more
    fits_better = _score(0.2, log_loss=0.6850)  # better log loss, pays less
    assert decide_champion(earns_more, champion, criterion="sharpe", **rule).alias == "champion"
    assert decide_champion(fits_better, champion, criterion="sharpe", **rule).alias == \
        "challenger"
    # Calmar as the criterion: the same rule on the other number
    assert decide_champion(_score(0.1, calmar=5.0), _score(2.0, calmar=1.0),
                           criterion="calmar", **rule).alias == "champion"
    tags = decide_champion(earns_more, champion, criterion="sharpe", **rule).as_tags()
    assert ModelScore.from_tags(tags, "decision.new") == earns_more
