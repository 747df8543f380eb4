"""What the README claims about determinism, checked as stated.

1. Run to run on one machine: the torch models (Chronos-2, the transformer) trained twice in
   fresh processes, with the pipeline's numeric settings, give bit-identical predictions. (The
   zoo's rerun in tests/pipeline/test_zoo_pipeline.py checks every model's out-of-fold frame
   and metrics the same way, in one process.)
2. Across CPUs: with the pipeline's settings (``candlecast.runtime.set_reproducible_numerics``)
   a CPU with AVX-512 trains them to the same bits as an AVX2-only CPU. Emulated on this
   machine: the AVX2-only CPU is the environment its libraries would choose by themselves
   (ATen's avx2 kernels, MKL and oneDNN capped at AVX2, OpenBLAS's Haswell kernels). The
   control shows the emulation matters: without the settings the two differ.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from candlecast.runtime import AVX2_NUMERICS, cpu_flags, set_reproducible_numerics

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("torch_probe.py")
PINNED = tuple(name for name, _ in AVX2_NUMERICS)
#: what the libraries pick by themselves on a CPU with AVX2 but no AVX-512
AVX2_ONLY_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                 "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}


@functools.cache
def probe(pinned: bool, emulate_avx2_cpu: bool, run: int = 0) -> dict[str, str]:
    """The probe's digests in a fresh process (``run`` only separates cache entries)."""
    env = {k: v for k, v in os.environ.items()
           if k not in PINNED and k not in AVX2_ONLY_CPU and k != "MKL_CBWR"}
    if emulate_avx2_cpu:
        env.update(AVX2_ONLY_CPU)
    if pinned:
        assert set_reproducible_numerics(env)
    done = subprocess.run([sys.executable, str(PROBE), str(ROOT / "data" / "sample")],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_avx2 = pytest.mark.skipif(
    not set_reproducible_numerics({}, flags=cpu_flags()), reason="not an x86-64 CPU with AVX2")


@needs_avx2
def test_run_to_run_on_one_machine_the_torch_models_are_bit_identical():
    first, again = probe(True, False), probe(True, False, run=1)
    assert first == again
    assert first["capability"] == "AVX2"  # the pipeline's setting reached torch


@needs_avx2
@pytest.mark.skipif("avx512f" not in cpu_flags(), reason="no AVX-512 here: nothing to emulate")
def test_an_avx512_cpu_trains_like_an_avx2_only_cpu_with_the_pipelines_settings():
    native, avx2_cpu = probe(False, False), probe(False, True)
    assert native["capability"] == "AVX512" and avx2_cpu["capability"] == "AVX2"
    # control: left to themselves, the two CPUs' kernels give different models
    assert native["transformer"] != avx2_cpu["transformer"]
    assert native["chronos"] != avx2_cpu["chronos"]
    # with the pipeline's settings they give the same bits
    assert probe(True, False) == probe(True, True)


def test_the_settings_apply_only_where_they_mean_something_and_keep_user_values():
    env: dict[str, str] = {"MKL_CBWR": "COMPATIBLE"}
    assert set_reproducible_numerics(env, flags={"avx2", "fma", "sse2"}, machine="x86_64")
    assert env == {**dict(AVX2_NUMERICS), "MKL_CBWR": "COMPATIBLE"}
    for flags, machine in (({"avx2", "fma"}, "arm64"), ({"avx", "fma"}, "x86_64"),
                           ({"avx2"}, "AMD64")):
        untouched: dict[str, str] = {}
        assert not set_reproducible_numerics(untouched, flags=flags, machine=machine)
        assert untouched == {}


@pytest.mark.parametrize("flow", ["flows/pipeline.py", "flows/ops.py"])
def test_the_flows_apply_the_settings_before_any_numeric_library_loads(flow):
    """Every DVC stage and ops flow starts in one of these files: the call must come before
    every import but the runtime module's own."""
    body = ast.parse((ROOT / flow).read_text()).body
    calls = [i for i, node in enumerate(body) if isinstance(node, ast.Expr)
             and isinstance(node.value, ast.Call)
             and getattr(node.value.func, "id", "") == "set_reproducible_numerics"]
    assert len(calls) == 1
    before = [node for node in body[: calls[0]] if isinstance(node, ast.Import | ast.ImportFrom)]
    modules = {getattr(n, "module", None) or n.names[0].name for n in before}
    assert modules <= {"__future__", "sys", "os", "sqlite3", "candlecast.runtime"}
