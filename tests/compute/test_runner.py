"""The compute runner: config checks, the Prefect task runner each name maps to, unit order."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from pydantic import ValidationError

from candlecast.compute import ComputeConfig, run_units, task_runner
from candlecast.config import parse_params


def test_inline_is_the_default_and_runs_in_this_thread_in_order():
    config = parse_params({}).compute
    assert config == ComputeConfig() and config.runner == "inline" and not config.parallel
    seen = []
    assert run_units(lambda u: seen.append(threading.get_ident()) or u * 2, [3, 1, 2],
                     config) == [6, 2, 4]
    assert set(seen) == {threading.get_ident()}
    assert task_runner(config) is None


def test_each_runner_name_maps_to_its_prefect_task_runner():
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = task_runner(ComputeConfig(runner="threads", workers=3))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    assert isinstance(task_runner(ComputeConfig(runner="processes", workers=2)),
                      ProcessPoolTaskRunner)
    remote = task_runner(ComputeConfig(runner="dask", address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    try:
        import prefect_ray  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pip install prefect-ray"):
            task_runner(ComputeConfig(runner="ray"))


@pytest.mark.parametrize(
    ("values", "message"),
    [({"runner": "threads", "address": "tcp://x:1"}, "for the dask or ray runner"),
     ({"runner": "dask", "address": "localhost"}, "scheduler URL"),
     ({"runner": "spark"}, "runner"),
     ({"workers": 0}, "workers")],
)
def test_bad_compute_settings_are_refused(values, message):
    with pytest.raises(ValidationError, match=message):
        ComputeConfig(**values)


def _slow_square(delay: float, unit: int) -> int:
    time.sleep(delay * (3 - unit))  # the first unit finishes last
    return unit * unit


def test_threads_return_results_in_unit_order_not_completion_order(tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    with prefect_test_harness(server_startup_timeout=300):
        out = run_units(partial(_slow_square, 0.2), [0, 1, 2],
                        ComputeConfig(runner="threads", workers=3), name="square")
    assert out == [0, 1, 4]
