"""The served model of the serving benchmark: a miniature copy of the project
(``tests/pipeline/mini_project.py``, the quick profile's training length but the default
pipeline's network sizes) with the whole zoo and a registered champion, cached in
``bench/.cache/serving/`` and rebuilt when its recipe changes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from typing import Any

from serving_bench import CACHE, ENTRY, MARKER, MINI, MODELS, REPO

#: network sizes the served model keeps from params.yaml (the quick profile shrinks them to
#: train in seconds; serving cost depends on them, training length does not)
ARCHITECTURE = {
    "chronos": ("context_length", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                "patch_size"),
    "transformer": ("window", "d_model", "num_heads", "num_layers", "dim_feedforward"),
}
RECIPE_VERSION = 2  # 2: default network sizes


def full_architecture() -> dict[str, dict[str, Any]]:
    """The Chronos-2 and transformer sizes of the default pipeline (params.yaml over the
    configs' defaults), to override the quick profile's small networks."""
    import yaml

    from candlecast.models.chronos_config import ChronosConfig
    from candlecast.models.transformer import TransformerConfig

    raw = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    out = {}
    for name, cls in (("chronos", ChronosConfig), ("transformer", TransformerConfig)):
        config = cls(**{k: v for k, v in (raw.get(name) or {}).items() if k in cls.model_fields})
        out[name] = {k: getattr(config, k) for k in ARCHITECTURE[name]}
    return out


def _recipe_hash() -> str:
    """What the cached miniature project depends on (code changes: use --rebuild)."""
    digest = hashlib.sha256(json.dumps([MODELS, RECIPE_VERSION]).encode())
    for path in ("params.yaml", "profiles/quick.yaml", "tests/pipeline/mini_project.py"):
        digest.update((REPO / path).read_bytes())
    return digest.hexdigest()[:16]


def build_mini_project() -> dict[str, Any]:
    """(In a child process.) The miniature project with the whole zoo and a champion."""
    sys.path.insert(0, str(REPO / "tests" / "pipeline"))
    from mini_project import make_mini_project
    from mlflow.tracking import MlflowClient

    from candlecast.config import load_params
    from candlecast.pipeline.paths import Paths
    from candlecast.pipeline.runner import run_stage, zoo_plan

    if MINI.exists():
        shutil.rmtree(MINI)
    started = time.time()
    make_mini_project(REPO, MINI, overrides={"models": {"run": MODELS, **full_architecture()}})
    paths = Paths(MINI)
    params = load_params(paths.params)
    stages: dict[str, float] = {}
    plan = [(s, None) for s in ("ingest", "validate", "features", "feature-store")]
    for stage, arg in plan + zoo_plan(params):
        t0 = time.time()
        run_stage(stage, params, paths, arg)
        stages[f"{stage}@{arg}" if arg else stage] = round(time.time() - t0, 1)
        print(f"  built {stage}{'@' + arg if arg else ''} in {stages[list(stages)[-1]]} s",
              flush=True)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{MINI / 'mlruns.db'}")
    champion = MlflowClient().get_model_version_by_alias(params.ensemble.registered_model,
                                                         "champion")
    marker = {"recipe": _recipe_hash(), "models": MODELS, "architecture": full_architecture(),
              "model_version": f"{params.ensemble.registered_model}/{champion.version}",
              "build_seconds": round(time.time() - started, 1), "stages_s": stages,
              "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    MARKER.write_text(json.dumps(marker, indent=2) + "\n")
    return marker


def served_project(rebuild: bool) -> tuple[dict[str, Any], bool]:
    """The cached miniature project's marker, building it (in a child process) if needed."""
    if not rebuild and MARKER.exists():
        marker = json.loads(MARKER.read_text())
        if marker.get("recipe") == _recipe_hash():
            return marker, True
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "build.log"
    print(f"building the miniature project in {MINI} (log: {log}) ...", flush=True)
    with log.open("wb") as handle:
        done = subprocess.run([sys.executable, str(ENTRY), "--build-only"],
                              stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not MARKER.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"building the miniature project failed:\n{tail}")
    return json.loads(MARKER.read_text()), False
