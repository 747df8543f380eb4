"""Model-zoo params: bad values fail at load, before any training, with one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from candlecast.config import ParamsError, check_deferred, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]


def _raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _with(**sections) -> dict:
    raw = _raw()
    for dotted, value in sections.items():
        node = raw
        *path, last = dotted.split("__")
        for key in path:
            node = node[key]
        node[last] = value
    return raw


def test_the_repository_params_are_valid_including_deferred_sections():
    params = load_params(REPO / "params.yaml")
    check_deferred(params)
    assert params.models.run == ("baselines", "lightgbm", "chronos", "transformer")
    assert params.label_horizon == 1 and params.models.horizons == (1, 4, 16)
    assert params.walk_forward_config().horizon == params.zoo_horizon == 16  # purge: longest
    assert params.deferred("ensemble.stacking").horizon == 1  # each horizon's stack sets its own
    assert params.models.horizons_of("chronos") == (1,)
    assert set(params.policy.search.horizons) <= set(params.models.horizons)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models__run": ["baselines", "xgboost"]}, "unknown model 'xgboost'"),
        ({"models__horizons": [1, 4, 32]}, "models.horizons [32] are not in labels.horizons"),
        ({"models__horizons": [4, 16], "models__model_horizons": {}},
         "must include the horizon of train.label"),
        ({"models__model_horizons": {"chronos": [4, 48]}}, "must be a non-empty subset"),
        ({"policy__search__horizons": [48]}, "policy horizons [48] are not trained"),
        ({"policy__default__exit_margin": 2.0}, "exit_margin (2.0) must be below"),
        ({"walk_forward__step": 10}, "step (10) must be >= test_size"),
        ({"walk_forward__test_size": 0}, "walk_forward.test_size"),
        ({"walk_forward__max_folds": 1}, "max_folds (1) must be at least"),
        ({"regime__vol_window": 30}, "regime.vol_window (30)"),
        ({"train__label": "label_up_2"}, "needs horizon 2 in labels.horizons"),
        ({"models__lightgbm__tuning__num_leaves": [10, 2]}, "num_leaves"),
        ({"ensemble__extras": ["garch_vol", "moon_phase"]}, "ensemble.extras"),
    ],
)
def test_bad_zoo_params_fail_at_load(change, message):
    with pytest.raises(ParamsError, match="invalid params") as err:
        parse_params(_with(**change))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models__transformer__d_model": 30}, "models.transformer: d_model (30)"),
        ({"regime__n_regimes": 1}, "regime.n_regimes"),
        ({"garch__dist": "cauchy"}, "garch.dist"),
        ({"ensemble__stacking__calibration": "magic"}, "ensemble.stacking.calibration"),
    ],
)
def test_deferred_sections_fail_in_check_deferred(change, message):
    params = parse_params(_with(**change))
    with pytest.raises(ParamsError, match="invalid params") as err:
        check_deferred(params)
    assert message in str(err.value)


def test_chronos_checkpoints_are_checked_against_the_project_root(tmp_path):
    raw = _with(models__chronos__checkpoint="./weights/chronos")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "params.yaml")
    weights = tmp_path / "weights" / "chronos"
    weights.mkdir(parents=True)
    (weights / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ParamsError, match="is not a Chronos model"):
        load_params(tmp_path / "params.yaml")
    asset = REPO / "tests" / "models" / "assets" / "tiny-chronos2"
    raw["models"]["chronos"]["checkpoint"] = str(asset)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert load_params(tmp_path / "params.yaml").models.chronos.checkpoint == str(asset)
