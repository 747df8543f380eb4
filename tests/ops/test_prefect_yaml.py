"""A broken prefect.yaml cannot land: every deployment's entrypoint imports to a Prefect flow,
its parameters validate against the flow's signature, schedules and triggers parse as Prefect
parses them at `prefect deploy`, and two retrains can never overlap."""

from __future__ import annotations

import pytest
import yaml

EXPECTED = {"refresh", "drift-check", "retrain", "backtest-report"}


@pytest.fixture(scope="module")
def prefect_yaml(repo_root) -> dict:
    return yaml.safe_load((repo_root / "prefect.yaml").read_text())


def test_the_file_validates_as_prefect_reads_it(prefect_yaml):
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(prefect_yaml)
    assert {d.name for d in model.deployments} == EXPECTED
    for deployment in model.deployments:
        assert deployment.work_pool is not None
        assert deployment.work_pool.name == "candlecast-process"
        assert deployment.entrypoint.startswith("flows/ops.py:")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entrypoint_parameters_schedules_and_triggers(prefect_yaml, repo_root, name,
                                                      monkeypatch):
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers
    from prefect.flows import Flow, load_flow_from_entrypoint

    monkeypatch.chdir(repo_root)
    deployment = next(d for d in prefect_yaml["deployments"] if d["name"] == name)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    assert flow.timeout_seconds is not None  # every flow has a timeout
    flow.validate_parameters(deployment.get("parameters", {}))  # raises on a bad parameter
    for schedule in deployment.get("schedules", []):
        _schedule_config_to_deployment_schedule(schedule)
    triggers = _initialize_deployment_triggers(name, deployment.get("triggers", []))
    expected_events = {"retrain": {"candlecast.drift.detected"},
                       "backtest-report": {"candlecast.retrain.finished"}}.get(name, set())
    assert {e for t in triggers for e in t.expect} == expected_events


def test_a_wrong_parameter_is_refused(repo_root, monkeypatch):
    from prefect.exceptions import ParameterTypeError
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(repo_root)
    flow = load_flow_from_entrypoint("flows/ops.py:refresh")
    with pytest.raises((ParameterTypeError, TypeError, ValueError)):
        flow.validate_parameters({"replay": "sometimes", "no_such_parameter": 1})


def test_retrains_never_overlap(prefect_yaml):
    by_name = {d["name"]: d for d in prefect_yaml["deployments"]}
    assert by_name["retrain"]["concurrency_limit"]["limit"] == 1
    assert by_name["retrain"]["concurrency_limit"]["collision_strategy"] == "ENQUEUE"
    assert by_name["refresh"]["schedules"][0]["cron"].endswith("* * * *")  # hourly
