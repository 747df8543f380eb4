"""`prefect deploy --all` from the project's prefect.yaml against a real local Prefect server:
the deployments, schedules, concurrency limits and event triggers a user will see in the UI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from candlecast.pipeline.prefect_server import local_prefect_server

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _post(url: str, path: str) -> list[dict]:
    request = urllib.request.Request(f"{url}{path}", data=b"{}", method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_every_deployment_of_prefect_yaml_deploys_to_a_real_server(tmp_path, repo_root):
    project = tmp_path / "proj"
    shutil.copytree(repo_root / "flows", project / "flows",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("prefect.yaml", "params.yaml"):
        shutil.copy(repo_root / name, project / name)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect_home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    spec = yaml.safe_load((repo_root / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in spec["deployments"]}
    with local_prefect_server(env=env, log=tmp_path / "server.log") as url:
        env["PREFECT_API_URL"] = url
        for pool in sorted(pools):
            subprocess.run([str(BIN / "prefect"), "work-pool", "create", pool, "--type",
                            "process"], cwd=project, env=env, check=True, capture_output=True)
        done = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        deployed = {d["name"]: d for d in _post(url, "/deployments/filter")}
        automations = [a["name"] for a in _post(url, "/automations/filter")]

    assert set(deployed) == {d["name"] for d in spec["deployments"]} == {
        "refresh", "drift-check", "retrain", "backtest-report"}
    for expected in spec["deployments"]:
        got = deployed[expected["name"]]
        assert got["entrypoint"] == expected["entrypoint"]
        assert got["work_pool_name"] == expected["work_pool"]["name"]
        crons = [s["schedule"]["cron"] for s in got["schedules"]]
        assert crons == [s["cron"] for s in expected.get("schedules", [])]
        assert got["global_concurrency_limit"]["limit"] == expected["concurrency_limit"]["limit"]
    # two retrains never overlap; a late refresh is skipped, not queued
    assert deployed["retrain"]["global_concurrency_limit"]["limit"] == 1
    assert deployed["retrain"]["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployed["refresh"]["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    # retrain on drift, the backtest report after each retrain: event triggers (automations)
    assert any(a.startswith("retrain") for a in automations)
    assert any(a.startswith("backtest-report") for a in automations)
