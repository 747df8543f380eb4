"""`dvc repro` through the Prefect flows on a miniature project, and the CLI's error contract."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mini_project import make_mini_project

from candlecast.pipeline.prefect_server import local_prefect_server

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _env(cwd: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    # a Prefect home of its own (its SQLite database) and patience for the temporary API server
    # on a loaded 2-core CI machine
    env["PREFECT_HOME"] = str(cwd / ".prefect")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"
    env["BENTOML_HOME"] = str(cwd / ".bentoml")  # the package stage's bento store
    # the project is cwd and its own MLflow store: what earlier tests of this worker left in
    # os.environ must not reach the stages (test_zoo_pipeline sets CANDLECAST_ROOT, and
    # mlflow.set_tracking_uri in any in-process test sets MLFLOW_TRACKING_URI)
    for name in ("CANDLECAST_ROOT", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    return env


def _run(cmd: list[str], cwd: Path, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env or _env(cwd), capture_output=True, text=True,
                          timeout=1500)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def test_dvc_repro_runs_every_stage_then_only_what_a_param_change_touches(tmp_path, repo_root):
    """`candlecast repro` (what `make run` calls) on a mini project: every stage in dependency
    order, all through ONE local Prefect API server, then nothing on a rerun, then only what a
    param change touches."""
    # the zoo's models themselves are tested in test_zoo_pipeline.py; no Optuna study here
    project = make_mini_project(
        repo_root, tmp_path / "proj",
        overrides={"models": {"lightgbm": {"tuning": {"enabled": False}}}},
    )
    _run(["git", "init", "-q"], project)
    _run([str(BIN / "dvc"), "init", "-q"], project)
    _run([str(BIN / "dvc"), "config", "core.analytics", "false"], project)
    with local_prefect_server(env=_env(project), log=tmp_path / "prefect.log") as url:
        os.environ["PREFECT_API_URL"] = url
        try:
            stages_run = _repro_then_param_change(project)
        finally:
            os.environ.pop("PREFECT_API_URL")
        # every stage's flow ran against this one server: each stage of the first run, then the
        # ones the param change touched
        request = urllib.request.Request(f"{url}/flow_runs/count", data=b"{}", method="POST",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == stages_run


def _versioned_expectations(project: Path) -> dict[str, str]:
    """Digest of every file of expectations/ but GX's run state (``uncommitted/``)."""
    root = project / "expectations"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "uncommitted" not in p.parts}


def _repro_then_param_change(project: Path) -> int:
    """The scenario; returns how many stages ran (each is one Prefect flow run)."""
    expectations = _versioned_expectations(project)
    first = _run([str(BIN / "candlecast"), "repro"], project)
    assert "Prefect API server for this run" not in first.stderr  # $PREFECT_API_URL was used
    stages = ["ingest", "validate", "features", "feature-store", "train", "evaluate", "regime",
              "train-model@baselines", "train-model@lightgbm", "ensemble", "compare", "backtest",
              "package"]
    for stage in stages:
        assert f"Running stage '{stage}'" in first.stdout
    # the backtest and the bento come after the ensemble they read
    at = {stage: first.stdout.index(f"Running stage '{stage}'") for stage in stages}
    assert at["ensemble"] < at["backtest"] and at["ensemble"] < at["package"]
    package = json.loads((project / "models" / "bento" / "package.json").read_text())
    assert package["model_version"] == "candlecast-ensemble/1", package.get("fallback_reason")
    assert package["model_source"] == "primary"
    assert (project / ".bentoml" / "bentos" / "candlecast_signal").is_dir()
    metrics = json.loads(_run([str(BIN / "dvc"), "metrics", "show", "--json"], project).stdout)
    shown = json.dumps(metrics)
    assert "log_loss" in shown and "auc" in shown and "bad_fraction" in shown

    # nothing a stage wrote counts as a change of its own dependencies: `dvc status` is clean,
    # also without GX's run state (a fresh clone has no expectations/gx/uncommitted), and the
    # validate stage left the versioned expectations as they were
    status = _run([str(BIN / "dvc"), "status"], project)
    assert status.stdout.strip() == "Data and pipelines are up to date.", status.stdout
    assert (project / "expectations/gx/uncommitted/validations").is_dir()  # GX did write there
    shutil.rmtree(project / "expectations/gx/uncommitted")
    assert _run([str(BIN / "dvc"), "status", "--quiet"], project, check=False).returncode == 0
    assert _versioned_expectations(project) == expectations

    # a second `candlecast repro` runs no stage and, with nothing to run, starts no Prefect
    # server (starting one was most of the ~15 s an up-to-date repro took)
    no_api = {k: v for k, v in _env(project).items() if k != "PREFECT_API_URL"}
    started = time.perf_counter()
    again = _run([str(BIN / "candlecast"), "repro"], project, env=no_api)
    print(f"up-to-date candlecast repro: {time.perf_counter() - started:.2f} s")
    assert again.stdout.strip() == "Data and pipelines are up to date."
    assert "Running stage" not in again.stdout
    assert "Prefect API server for this run" not in again.stderr
    _trading_leaves_the_pipeline_outputs_alone(project)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["backtest"]["rules"]["sma_fast"] = 24  # a rule baseline: only the backtest reruns
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    partial = _run([str(BIN / "candlecast"), "repro"], project)
    assert "Running stage 'backtest'" in partial.stdout
    for stage in ("ingest", "validate", "features", "feature-store", "train", "evaluate",
                  "regime", "train-model@baselines", "train-model@lightgbm", "ensemble",
                  "compare", "policy"):
        assert f"Running stage '{stage}'" not in partial.stdout
    plots = _run([str(BIN / "dvc"), "plots", "show", "--json"], project)
    assert "calibration.csv" in plots.stdout
    return sum(out.stdout.count("Running stage '") for out in (first, partial))


def _trading_leaves_the_pipeline_outputs_alone(project: Path) -> None:
    """A paper replay writes every candle's features into the Feast online store -- live state,
    outside the feature-store stage's DVC outputs -- so the stage stays up to date."""
    online = project / "data" / "online" / "online_store.db"
    before = online.stat().st_mtime_ns
    assert _run([str(BIN / "dvc"), "status", "feature-store"], project).stdout.strip() == (
        "Data and pipelines are up to date.")
    from candlecast.pipeline.prefect_server import free_port

    _run([str(BIN / "candlecast"), "trade", "run", "--replay", "--replay-last", "3",
          "--service-url", f"http://127.0.0.1:{free_port()}"], project)  # no service: no orders
    assert online.stat().st_mtime_ns > before  # the trader wrote its features
    status = _run([str(BIN / "dvc"), "status", "feature-store", "train"], project).stdout
    assert status.strip() == "Data and pipelines are up to date.", status


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "seed", "forty-two", "train.seed"),
        ("ingest", "symbols", ["DOGE/USD"], "not in sample dataset"),
        ("ingest", "timeframe", "7q", "timeframe '7q' is not supported"),
        ("features", "rsi_window", 0, "features.rsi_window"),
    ],
)
def test_bad_params_give_one_error_line_and_no_output(
    tmp_path, repo_root, section, key, value, message
):
    project = make_mini_project(repo_root, tmp_path / "proj", overrides={section: {key: value}})
    done = _run([str(BIN / "python"), "flows/pipeline.py", "ingest"], project, check=False)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert not (project / "data" / "raw").exists()


def test_cli_reports_a_truncated_sample_file_in_one_line(tmp_path, repo_root):
    project = make_mini_project(repo_root, tmp_path / "proj")
    target = project / "data/sample/bitfinex_30m/BTC.csv.gz"
    target.write_bytes(target.read_bytes()[:500])
    done = _run([str(BIN / "candlecast"), "ingest"], project, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: sample file")
    assert "truncated" in done.stderr
    assert not list((project / "data").glob("raw/**/*.parquet"))


def test_prefect_flow_runs_the_ingest_stage_under_the_test_harness(tmp_path, repo_root):
    from prefect.testing.utilities import prefect_test_harness

    project = make_mini_project(repo_root, tmp_path / "proj")
    sys.path.insert(0, str(project))
    try:
        from flows.pipeline import ingest_flow

        with prefect_test_harness(server_startup_timeout=300):
            result = ingest_flow(root=str(project), params_file=str(project / "params.yaml"))
    finally:
        sys.path.remove(str(project))
    assert result["source"] == "sample"
    assert set(result["series"]) == {"bitfinex:BTC/USD:30m", "bitfinex:ETH/USD:30m"}


def test_repro_runs_the_stages_with_the_project_interpreter_first_on_path():
    """`make run` calls `.venv/bin/candlecast repro` without activating the venv: the stages'
    `python` must still be the project's interpreter."""
    from candlecast.pipeline.prefect_server import command_env

    env = command_env({"PATH": "/usr/bin:/bin"}, "http://127.0.0.1:1/api")
    assert env["PATH"].split(os.pathsep)[0] == str(BIN)
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:1/api"
    assert "PREFECT_API_URL" not in command_env({"PATH": "/bin"})
