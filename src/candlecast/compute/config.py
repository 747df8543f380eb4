"""Where the heavy units of work run (``compute:`` in ``params.yaml``).

``inline`` (the default) runs every unit in the stage's own process, one after the other: what
the pipeline always did, with no Prefect task per unit. The others submit each unit as a Prefect
task to a Prefect task runner: ``threads`` (``ThreadPoolTaskRunner``), ``processes``
(``ProcessPoolTaskRunner``), ``dask`` (``prefect_dask.DaskTaskRunner``: a ``LocalCluster`` of
``workers`` processes, or the scheduler at ``address``) and ``ray`` (``prefect_ray.RayTaskRunner``,
optional: ``pip install prefect-ray``, not tested here). The runner never changes a result: the
units and their seeds are fixed before submission and the results are gathered in unit order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RunnerName = Literal["inline", "threads", "processes", "dask", "ray"]


class ComputeConfig(BaseModel):
    """Which task runner the stages fan their units of work out to, and how big it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runner: RunnerName = "inline"
    #: threads, processes or LocalCluster worker processes; None: the task runner's default
    #: (the CPU count)
    workers: int | None = Field(default=None, ge=1, le=4096)
    #: threads per Dask worker process (1: one unit per process at a time, BLAS and OpenMP
    #: pinned to one thread by Dask's nanny; the models set their own thread counts)
    threads_per_worker: int = Field(default=1, ge=1, le=256)
    #: an existing cluster: a Dask scheduler (``tcp://host:8786``) or a Ray cluster
    #: (``ray://host:10001``); None: a local cluster started for the stage and closed after it
    address: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ComputeConfig:
        if self.address is not None and self.runner not in ("dask", "ray"):
            raise ValueError(
                f"compute.address is for the dask or ray runner, not {self.runner!r}"
            )
        if self.address is not None and self.runner == "dask" and "://" not in self.address:
            raise ValueError(
                f"compute.address must be a scheduler URL like tcp://host:8786, got "
                f"{self.address!r}"
            )
        return self

    @property
    def parallel(self) -> bool:
        return self.runner != "inline"
