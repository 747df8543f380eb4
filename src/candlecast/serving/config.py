"""Configuration of the signal service (``serving:`` in ``params.yaml`` once the lead adds it).

The service itself is started by ``bentoml serve``, so it cannot receive a ``Params`` object:
:func:`load_serving_config` reads one JSON file (written by the ``package`` stage from
``params.yaml``, or by hand), whose path comes from the environment variable
``CANDLECAST_SERVING_CONFIG``; ``CANDLECAST_ROOT`` overrides ``project_root`` (e.g. a mounted
project in a container). Only ``bentos/service.py`` calls it: it is the edge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from candlecast.common.auth import DEFAULT_TOKEN_ENV
from candlecast.common.uris import absolute_sqlite_uri
from candlecast.features import FeatureConfig
from candlecast.risk import RiskConfig

CONFIG_ENV = "CANDLECAST_SERVING_CONFIG"
ROOT_ENV = "CANDLECAST_ROOT"
CONFIG_FILE = "serving_config.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServingConfig(_Frozen):
    """Everything the signal service needs; relative paths resolve against ``project_root``
    (itself relative to the config file's folder when read from a file)."""

    project_root: str = "."
    #: the model to serve: a registry URI (``models:/NAME@ALIAS``, ``models:/NAME/latest``,
    #: ``models:/NAME/3``) or a local MLflow model folder (as the package stage bundles)
    model_uri: str = "models:/candlecast-ensemble@champion"
    #: tried in order when ``model_uri`` cannot be resolved (no champion yet); reported
    fallback_model_uris: tuple[str, ...] = ("models:/candlecast-lightgbm/latest",)
    tracking_uri: str = "sqlite:///mlruns.db"
    registry_uri: str | None = None
    #: the Feast repository; None: no feature store, only /predict answers
    feature_repo: str | None = "feature_repo"
    #: the repository's config file (``feature_store.yaml``: SQLite; ``feature_store.redis.yaml``)
    feature_store_config: str = "feature_store.yaml"
    feature_service: str = "direction_model_v1"
    feature_view: str = "candle_features"
    #: read the online store through the provider's ``online_read`` (one query) instead of
    #: ``get_online_features`` (same row, tested; see ``candlecast.serving.online``)
    direct_online_reads: bool = True
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    #: ``/signal`` refuses (status "stale") features older than this many bars
    max_feature_age_bars: float = Field(default=1.5, gt=0)
    #: ``/predict`` refuses candles whose last close is older than this; None: not checked
    #: (replays of historical candles are legitimate there)
    predict_max_age_bars: float | None = Field(default=None, gt=0)
    #: fewest candles ``/predict`` accepts; None: warm-up bars + model window - 1
    min_candles: int | None = Field(default=None, ge=1)
    max_candles: int = Field(default=2000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=100_000_000)
    #: rows of history a window model gets; None: the model's own metadata says
    window_rows: int | None = Field(default=None, ge=1, le=10_000)
    #: series the service answers for; None: those in the feature store's offline source
    known_series: tuple[str, ...] | None = None
    #: a failed start-up load (no champion yet, registry or feature store not reachable) is
    #: retried every this many seconds, the service staying not-ready; None: one attempt
    load_retry_seconds: float | None = Field(default=10.0, gt=0)
    #: prepare the ensemble's networks for one-row calls at load (Chronos-2 traced with
    #: TorchScript for the serving context, checked against eager mode before use)
    trace_networks: bool = True
    #: the risk engine used for size_fraction / stop_price / take_profit suggestions
    risk: RiskConfig = RiskConfig()
    #: the book's model for ``/portfolio`` (the portfolio path's registered model); None, or
    #: not found: ``/portfolio`` answers 503 and everything else works as before
    portfolio_model_uri: str | None = "models:/candlecast-portfolio@champion"
    #: ``/portfolio`` answers ``stale`` when its latest candle closed longer ago; None: not
    #: checked (replays of historical candles)
    portfolio_max_age_bars: float | None = Field(default=None, gt=0)
    #: environment variable holding the control token every state-changing endpoint
    #: (``POST /reload``) requires as ``Authorization: Bearer <token>``; unset: refused
    control_token_env: str = Field(default=DEFAULT_TOKEN_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("model_uri")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model_uri must not be empty")
        return value

    def root(self) -> Path:
        return Path(self.project_root).expanduser().resolve()

    def path(self, value: str) -> Path:
        """``value`` as an absolute path (relative ones are taken from ``project_root``)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root() / p).resolve()

    def resolved_tracking_uri(self) -> str:
        """Relative ``sqlite:///`` URIs are taken from ``project_root`` (as the pipeline does)."""
        return absolute_sqlite_uri(self.tracking_uri, self.root())

    def check_tracking_store(self) -> None:
        """Refuse a SQLite tracking store that does not exist: MLflow would silently create an
        empty one there (a typo would then look like "model not found")."""
        uri = self.resolved_tracking_uri()
        if uri.startswith("sqlite:///"):
            path = Path(uri.removeprefix("sqlite:///"))  # absolute: resolved above
            if not path.exists():
                raise FileNotFoundError(f"MLflow tracking store {path} does not exist")

    def resolved_model_uri(self, uri: str) -> str:
        """Registry and scheme URIs unchanged; a plain path made absolute."""
        if ":/" in uri:
            return uri
        return str(self.path(uri))


def load_serving_config(
    environ: Mapping[str, str], default_dir: Path | None = None
) -> ServingConfig:
    """The service's configuration: the JSON file named by ``CANDLECAST_SERVING_CONFIG``, else
    ``serving_config.json`` in ``default_dir`` (the bento's folder), else the defaults.
    ``CANDLECAST_ROOT`` replaces ``project_root``. Raises ``ValueError`` naming the file."""
    named = environ.get(CONFIG_ENV)
    path = Path(named) if named else (default_dir / CONFIG_FILE if default_dir else None)
    raw: dict[str, object] = {}
    if path is not None and (named or path.exists()):
        if not path.exists():
            raise ValueError(f"{CONFIG_ENV}={path} does not exist")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"serving config {path} is not valid JSON: {err}") from err
        if not isinstance(raw, dict):
            raise ValueError(f"serving config {path} must hold a JSON object")
        root = Path(str(raw.get("project_root", ".")))
        if not root.is_absolute():
            raw["project_root"] = str((path.parent / root).resolve())
        model_uri = str(raw.get("model_uri", ServingConfig().model_uri))
        if ":/" not in model_uri and not Path(model_uri).is_absolute():
            raw["model_uri"] = str((path.parent / model_uri).resolve())
    if environ.get(ROOT_ENV):
        raw["project_root"] = environ[ROOT_ENV]
    try:
        return ServingConfig.model_validate(raw)
    except ValueError as err:
        raise ValueError(f"invalid serving config {path or '(defaults)'}: {err}") from err


def write_serving_config(config: ServingConfig, path: Path) -> None:
    """Write ``config`` as the JSON :func:`load_serving_config` reads."""
    path.write_text(json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


def compose_serving_config(
    serving: ServingConfig,
    *,
    features: FeatureConfig,
    feature_service: str,
    tracking_uri: str,
    risk: RiskConfig,
    project_root: Path | str = ".",
    feature_store_config: str = "feature_store.yaml",
) -> ServingConfig:
    """The service's config from the pipeline's params: the ``serving:`` section, with the
    values other sections own taken from them (one truth: the features the model was trained
    on, the feature service, the MLflow store, the risk engine)."""
    return serving.model_copy(update={
        "features": features,
        "feature_service": feature_service,
        "tracking_uri": tracking_uri,
        "risk": risk,
        "project_root": str(project_root),
        "feature_store_config": feature_store_config,
    })
