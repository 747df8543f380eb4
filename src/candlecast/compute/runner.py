"""Fan a list of units of work out to the Prefect task runner ``compute:`` names.

:func:`run_units` is the one entry point: ``fn(unit)`` for every unit, results in the order of
``units`` whatever order they finish in. With the ``inline`` runner that is a plain loop in this
process (no Prefect involved: the default pipeline is what it always was). Otherwise the units
become Prefect tasks (``<name>-<label>`` in the UI) submitted from a small flow,
``candlecast-fanout``, whose task runner is built by :func:`task_runner`; it runs as a subflow
of the stage's flow. A unit that raises fails the stage with its own error, as inline.

Units and ``fn`` travel to the workers by (cloud)pickle: ``fn`` should be a module-level
function or a ``functools.partial`` of one, its arguments plain data. Everything a unit needs
to be deterministic (seeds, thread counts, fold boundaries) must be in the unit or in ``fn``'s
arguments, never in the worker's state.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from candlecast.compute.config import ComputeConfig

U = TypeVar("U")
R = TypeVar("R")

#: environment of local Dask worker processes: the Prefect API the stage's flow reports to
#: (without it every worker would start a temporary Prefect server of its own)
_API_URL = "PREFECT_API_URL"


def run_units(
    fn: Callable[[U], R],
    units: Sequence[U],
    config: ComputeConfig,
    *,
    name: str = "unit",
    label: Callable[[U], str] = str,
) -> list[R]:
    """``[fn(u) for u in units]``, run by ``config``'s task runner (see the module docstring)."""
    units = list(units)
    if not config.parallel or len(units) == 0:
        return [fn(unit) for unit in units]
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    # no result persistence or input hashing: units carry frames (hashing them costs time)
    unit_task = task(fn, name=name, cache_policy=NO_CACHE, persist_result=False, retries=0)
    with _runner(config) as runner:

        @flow(name="candlecast-fanout", task_runner=runner, flow_run_name=f"{name} x{len(units)}",
              log_prints=True, persist_result=False, validate_parameters=False)
        def fanout() -> list[Any]:
            futures = [
                unit_task.with_options(task_run_name=f"{name}-{label(unit)}").submit(unit)
                for unit in units
            ]
            return [future.result() for future in futures]

        return fanout()


@contextmanager
def _runner(config: ComputeConfig) -> Iterator[Any]:
    """The task runner; a local Dask cluster is started here (and closed after the units) so
    that its workers report to this process's Prefect API."""
    if config.runner == "dask" and config.address is None:
        from distributed import LocalCluster

        with LocalCluster(
            n_workers=config.workers or os.cpu_count() or 1,
            threads_per_worker=config.threads_per_worker,
            processes=True,
            dashboard_address=":0",  # any free port (8787 may be taken)
            env=_worker_env(),
        ) as cluster:
            yield task_runner(config.model_copy(update={"address": cluster.scheduler_address}))
        return
    yield task_runner(config, worker_env=_worker_env() if config.runner == "processes" else None)


def task_runner(config: ComputeConfig, worker_env: dict[str, str] | None = None) -> Any:
    """The Prefect task runner ``config`` names (``inline``: None, the flow's default);
    ``worker_env`` is set in each process-pool worker before it runs a task."""
    if config.runner == "inline":
        return None
    if config.runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.workers)
    if config.runner == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(
            max_workers=config.workers, initializer=_set_env, initargs=(worker_env or {},)
        )
    if config.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if config.address is not None:
            return DaskTaskRunner(address=config.address)
        return DaskTaskRunner(cluster_kwargs={  # run_units starts its own LocalCluster
            "n_workers": config.workers or os.cpu_count() or 1,
            "threads_per_worker": config.threads_per_worker,
            "processes": True,
            "dashboard_address": ":0",
            "env": worker_env or {},
        })
    if config.runner == "ray":
        try:
            from prefect_ray import RayTaskRunner  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeError(
                "compute.runner: ray needs the optional prefect-ray package "
                "(pip install prefect-ray); it is not in requirements.lock"
            ) from exc
        if config.address is not None:
            return RayTaskRunner(address=config.address)
        init = {"num_cpus": config.workers} if config.workers else {}
        return RayTaskRunner(init_kwargs=init)
    raise ValueError(f"unknown compute.runner {config.runner!r}")


def _set_env(values: dict[str, str]) -> None:
    """Run first in each process-pool worker (before Prefect reads its settings there)."""
    os.environ.update(values)


def _worker_env() -> dict[str, str]:
    """The Prefect API URL local worker processes must report to."""
    url = os.environ.get(_API_URL)
    if not url:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:  # the running (temporary) server
            url = str(client.api_url)
    return {_API_URL: url}
