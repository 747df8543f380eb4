"""Process-wide defaults set by the entry points (flows, the stage commands) before Prefect,
MLflow, Feast, BentoML or PyTorch are imported. Values already set are kept.

* :func:`set_offline_defaults`: nothing calls home, and Prefect's temporary API server gets time
  to start on a busy 2-core machine (its default is 20 s).
* :func:`set_reproducible_numerics`: on an x86-64 CPU with AVX2 and FMA, the numeric libraries
  use their AVX2 code paths even where the CPU has more (AVX-512), so a stage computes the same
  bits on every such CPU. Libraries pick kernels by the CPU they run on: PyTorch's ATen
  (``ATEN_CPU_CAPABILITY``), MKL's BLAS behind torch (``MKL_CBWR``, its conditional numerical
  reproducibility), oneDNN (``ONEDNN_MAX_CPU_ISA``) and the OpenBLAS of numpy/scipy
  (``OPENBLAS_CORETYPE``); different kernels round differently, and training amplifies that
  (Chronos-2's AUC differed in the third decimal between two machines). Costs up to ~1.5x in
  torch training time on an AVX-512 CPU, nothing on an AVX2 one. The thread count is pinned by
  the stages (``models.torch_threads``), the seeds by each model's config.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Collection, MutableMapping
from pathlib import Path

OFFLINE_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("DO_NOT_TRACK", "1"),
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("FEAST_USAGE", "False"),
    ("BENTOML_DO_NOT_TRACK", "True"),
    ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"),
)

#: the AVX2 code paths of every library that chooses its kernels by CPU
AVX2_NUMERICS: tuple[tuple[str, str], ...] = (
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("MKL_CBWR", "AVX2"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("OPENBLAS_CORETYPE", "Haswell"),
)
#: CPU flags the AVX2 code paths need (every Intel CPU since Haswell, every AMD Zen)
AVX2_FLAGS = frozenset({"avx2", "fma"})


def set_offline_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    for name, value in OFFLINE_DEFAULTS:
        environ.setdefault(name, value)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def set_reproducible_numerics(environ: MutableMapping[str, str] = os.environ,
                              flags: Collection[str] | None = None,
                              machine: str | None = None) -> bool:
    """Pin the numeric libraries to their AVX2 code paths (see the module docstring) if this
    is an x86-64 CPU with AVX2 and FMA; True if it is. Must run before torch, numpy or scipy
    load their libraries."""
    machine = machine if machine is not None else platform.machine()
    flags = cpu_flags() if flags is None else flags
    if machine.lower() not in ("x86_64", "amd64") or not set(flags) >= AVX2_FLAGS:
        return False
    for name, value in AVX2_NUMERICS:
        environ.setdefault(name, value)
    return True
