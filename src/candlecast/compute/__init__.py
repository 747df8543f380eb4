"""Where the heavy units of work run: the ``compute:`` config and the Prefect task runners."""

from candlecast.compute.config import ComputeConfig
from candlecast.compute.runner import run_units, task_runner

__all__ = ["ComputeConfig", "run_units", "task_runner"]
