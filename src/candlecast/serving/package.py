"""The ``package`` stage: bundle the champion into ``bentos/`` and run ``bentoml build``.

Steps (each idempotent):

1. resolve the served model exactly as the service would (alias ``champion``, then the
   fallbacks) and pin its version;
2. copy that MLflow model into ``bentos/model/`` with ``candlecast_model.json`` (name, version,
   run id, lineage tags, whether it was the champion or a fallback);
3. write ``bentos/serving_config.json`` pointing at the bundled model (``model_uri: model``);
4. build the ``candlecast`` wheel into ``bentos/wheels/`` and ``bentos/requirements.txt`` from
   ``requirements.lock`` (the bento's Python environment);
5. ``bentoml build bentos/`` (BentoML's store, ``$BENTOML_HOME``; no network, no Docker);
6. write ``models/bento/package.json`` (bento tag, model version, lineage): the stage output.

The built bento is then ``bentoml serve candlecast_signal:latest`` or, on a machine with
Docker, ``bentoml containerize candlecast_signal:latest``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from candlecast import __version__
from candlecast.serving.config import CONFIG_FILE, ServingConfig, write_serving_config
from candlecast.serving.model import BUNDLE_INFO, ModelError, resolve

BUNDLED_MODEL_DIR = "model"
WHEEL = f"candlecast-{__version__}-py3-none-any.whl"
#: installed before the lock (the lock omits it; see the Makefile)
TORCH_PIN = "torch==2.13.0"
_PIN = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==[^\s;]+(\s*;.*)?$")


def resolve_served_model(config: ServingConfig, client: object = None) -> dict[str, object]:
    """The model the service would load, pinned: uri, name, version, run id, lineage tags,
    ``source`` (primary | fallback) and why the primary was skipped."""
    import mlflow
    from mlflow import MlflowClient

    config.check_tracking_store()
    mlflow.set_tracking_uri(config.resolved_tracking_uri())
    if config.registry_uri:
        mlflow.set_registry_uri(config.registry_uri)
    client = client or MlflowClient()
    reasons: list[str] = []
    uris = [config.resolved_model_uri(u) for u in (config.model_uri, *config.fallback_model_uris)]
    for i, uri in enumerate(uris):
        try:
            found = resolve(uri, client)
        except ModelError as err:
            reasons.append(str(err))
            continue
        return {
            "requested_uri": config.model_uri,
            "resolved_uri": found.load_uri,
            "name": found.name,
            "version": found.version,
            "run_id": found.run_id,
            "tags": {k: v for k, v in found.tags.items() if k.startswith("lineage.")},
            "source": "primary" if i == 0 else "fallback",
            "fallback_reason": "; ".join(reasons) or None,
        }
    raise ModelError("no model to package: " + "; ".join(reasons))


def bundle_model(model: dict[str, object], bento_dir: Path) -> Path:
    """Download the pinned MLflow model into ``bento_dir/model`` (replacing it)."""
    import mlflow

    target = bento_dir / BUNDLED_MODEL_DIR
    with tempfile.TemporaryDirectory(dir=bento_dir) as tmp:
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=str(model["resolved_uri"]), dst_path=tmp))
        (local / BUNDLE_INFO).write_text(json.dumps(model, indent=2, sort_keys=True) + "\n")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(local), target)
    return target


def write_requirements(lock: Path, out: Path) -> int:
    """``requirements.txt`` for the bento: the pinned lines of the lock, plus torch."""
    pins = [TORCH_PIN]
    for line in lock.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and _PIN.match(line):
            pins.append(line)
    out.write_text("\n".join(pins) + "\n")
    return len(pins)


def build_wheel(root: Path, out_dir: Path) -> Path:
    """The project's wheel (no dependencies, no build isolation: offline), built from a copy
    of the sources so setuptools' ``build/`` and ``*.egg-info`` never land in the checkout."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("candlecast-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(root / "src", Path(tmp) / "src",
                        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).exists():
                shutil.copy(root / name, Path(tmp) / name)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--quiet", "-w", str(out_dir), tmp],
            capture_output=True, text=True, check=False,
        )
    wheel = out_dir / WHEEL
    if done.returncode != 0 or not wheel.exists():
        raise RuntimeError(f"building the candlecast wheel failed: {done.stderr.strip()[-500:]}")
    return wheel


def bentoml_build(bento_dir: Path, env: dict[str, str] | None = None) -> str:
    """``bentoml build`` the folder; returns the bento tag."""
    cli = Path(sys.executable).with_name("bentoml")
    done = subprocess.run(
        [str(cli), "build", ".", "--output", "tag"],
        cwd=bento_dir, capture_output=True, text=True, check=False,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(env or {})},
    )
    tags = re.findall(r"__tag__:(\S+)", done.stdout) or re.findall(
        r"(candlecast_signal:\w+)", done.stdout)
    if done.returncode != 0 or not tags:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError("bentoml build failed: " + " | ".join(tail))
    return tags[-1]


def package_service(config: ServingConfig, root: Path, bento_dir: Path | None = None,
                    out_dir: Path | None = None, build: bool = True,
                    env: dict[str, str] | None = None) -> dict[str, object]:
    """Run the whole ``package`` stage (module docstring); returns the summary it writes."""
    bento_dir = (bento_dir or root / "bentos").resolve()
    out_dir = out_dir or root / "models" / "bento"
    model = resolve_served_model(config)
    bundle_model(model, bento_dir)
    bundled = config.model_copy(update={
        "model_uri": BUNDLED_MODEL_DIR,
        "fallback_model_uris": (),
        "project_root": os.path.relpath(root.resolve(), bento_dir),
    })
    write_serving_config(bundled, bento_dir / CONFIG_FILE)
    n_requirements = write_requirements(root / "requirements.lock", bento_dir / "requirements.txt")
    build_wheel(root, bento_dir / "wheels")
    tag = bentoml_build(bento_dir, env) if build else None
    summary = {
        "bento_tag": tag,
        "model_version": f"{model['name']}/{model['version']}",
        "model_source": model["source"],
        "fallback_reason": model["fallback_reason"],
        "mlflow_run_id": model["run_id"],
        "lineage": model["tags"],
        "requirements": n_requirements,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "package.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
