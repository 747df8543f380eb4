"""The typed, frozen parameters of a pipeline run, loaded once at the edge from ``params.yaml``.

Each domain package owns the model of its own section; this module only composes them and
checks cross-section consistency. Nothing else reads ``params.yaml``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.rules import RuleConfig
from candlecast.compute import ComputeConfig
from candlecast.console.config import ConsoleConfig
from candlecast.data.ingest import CcxtIngestConfig
from candlecast.data.sample import DATASETS
from candlecast.data.schema import SeriesId, timeframe_to_timedelta
from candlecast.evaluation.splits import WalkForwardConfig
from candlecast.features import FeatureConfig, LabelConfig, feature_names
from candlecast.features.cross_section import CrossSectionConfig
from candlecast.models.baselines import BaselineConfig
from candlecast.models.chronos_config import ChronosConfig, check_checkpoint
from candlecast.models.lightgbm_model import LightGBMHyperparams
from candlecast.models.registry import (
    MODEL_NAMES,
    LightGBMZooConfig,
    check_model_names,
    resolve_checkpoint,
)
from candlecast.ops.config import OpsConfig
from candlecast.policy.config import PolicyConfig, PolicySearchSpace, PolicyTuning
from candlecast.portfolio.config import PortfolioParams
from candlecast.risk.config import RiskConfig
from candlecast.serving.config import ServingConfig
from candlecast.trading.config import TradeConfig
from candlecast.validation import ValidationConfig


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestParams(_Frozen):
    """Where candles come from. ``source: sample`` reads the bundled real files offline."""

    source: Literal["sample", "ccxt"] = "sample"
    sample_dataset: str = "bitfinex_30m"
    exchange: str = "bitfinex"
    symbols: tuple[str, ...] = ("BTC/USD", "ETH/USD", "LTC/USD")
    timeframe: str = "30m"
    since: str | None = None
    until: str | None = None
    ccxt: dict[str, Any] = Field(
        default_factory=dict,
        description="Paging/retry knobs of CcxtIngestConfig (page_limit, max_retries, "
        "backoff_base_s, backoff_max_s, timeout_ms, rate_limit_ms, resume)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> IngestParams:
        timeframe_to_timedelta(self.timeframe)
        self.ccxt_config()  # validates the ccxt knobs whatever the source
        if not self.symbols:
            raise ValueError("ingest.symbols must name at least one symbol")
        for symbol in self.symbols:
            SeriesId(self.exchange, symbol, self.timeframe)
        if self.source == "sample":
            if self.sample_dataset not in DATASETS:
                raise ValueError(
                    f"ingest.sample_dataset {self.sample_dataset!r} is unknown; "
                    f"expected one of {sorted(DATASETS)}"
                )
            ds = DATASETS[self.sample_dataset]
            if (self.exchange, self.timeframe) != (ds.exchange, ds.timeframe):
                raise ValueError(
                    f"ingest.exchange/timeframe must be {ds.exchange!r}/{ds.timeframe!r} for "
                    f"sample dataset {ds.name}, got {self.exchange!r}/{self.timeframe!r}"
                )
            unknown = [s for s in self.symbols if s not in ds.symbols]
            if unknown:
                raise ValueError(
                    f"ingest.symbols {unknown} are not in sample dataset {ds.name}; "
                    f"expected some of {list(ds.symbols)}"
                )
        return self

    @property
    def series(self) -> list[SeriesId]:
        return [SeriesId(self.exchange, s, self.timeframe) for s in self.symbols]

    def ccxt_config(self) -> CcxtIngestConfig:
        try:
            return CcxtIngestConfig(
                exchange=self.exchange,
                symbols=self.symbols,
                timeframe=self.timeframe,
                since=self.since,
                until=self.until,
                **self.ccxt,
            )
        except ValidationError as err:
            raise ValueError(f"ingest.ccxt: {_describe(err)}") from err


class FeatureStoreParams(_Frozen):
    feature_service: str = "direction_model_v1"
    ttl_hours: float = Field(default=6.0, gt=0)
    #: the Feast repo config in feature_repo/: ``feature_store.yaml`` (SQLite online store under
    #: data/online/) or ``feature_store.redis.yaml`` (Redis at $CANDLECAST_REDIS); the pipeline,
    #: the signal service and the trader all open the store through it
    repo_config: str = Field(default="feature_store.yaml", pattern=r"^[A-Za-z0-9_.-]+\.yaml$")

    @property
    def ttl(self) -> timedelta:
        return timedelta(hours=self.ttl_hours)


class SplitParams(_Frozen):
    """Chronological hold-out fractions (train, validation for early stopping, test)."""

    train: float = Field(default=0.7, gt=0, lt=1)
    val: float = Field(default=0.15, gt=0, lt=1)
    test: float = Field(default=0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitParams:
        if abs(self.train + self.val + self.test - 1.0) > 1e-9:
            raise ValueError(
                f"train.split fractions must sum to 1, got {self.train + self.val + self.test:.4f}"
            )
        return self


#: the hold-out model's booster settings (``train.lightgbm``): the zoo model's hyperparameters
LightGBMParams = LightGBMHyperparams


class TrainParams(_Frozen):
    label: str = "label_up_1"
    target_return: str = "fwd_logret_1"
    seed: int = 42
    split: SplitParams = SplitParams()
    lightgbm: LightGBMParams = LightGBMParams()


class EvaluateParams(_Frozen):
    calibration_bins: int = Field(default=10, ge=2, le=50)
    cost_bps: float = Field(default=10.0, ge=0)


class MlflowParams(_Frozen):
    tracking_uri: str = "sqlite:///mlruns.db"
    artifact_root: str = "mlartifacts"
    experiment: str = "candlecast"
    registered_model: str = "candlecast-lightgbm"


class WalkForwardParams(_Frozen):
    """Fold layout of the model zoo, in bars; the purge horizon comes from ``train.label``."""

    scheme: Literal["expanding", "rolling"] = "rolling"
    train_size: int = Field(default=12_000, ge=1)
    test_size: int = Field(default=4_000, ge=1)
    step: int | None = Field(default=None, ge=1)
    embargo: int = Field(default=48, ge=0)
    max_folds: int | None = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _valid_layout(self) -> WalkForwardParams:
        self.config(horizon=1)
        return self

    def config(self, horizon: int) -> WalkForwardConfig:
        try:
            return WalkForwardConfig(**self.model_dump(), horizon=horizon)
        except ValidationError as err:
            raise ValueError(str(err.errors()[0]["msg"]).removeprefix("Value error, ")) from err


class ModelsParams(_Frozen):
    """Which zoo models run (one DVC stage each), for which label horizons, and each model's
    own section."""

    run: tuple[str, ...] = MODEL_NAMES
    #: label horizons (bars) every zoo model is trained and scored for, walk-forward on the
    #: same folds (purged by the longest); each must be in labels.horizons and the policy
    #: chooses among them. ``train.label``'s horizon is the one the comparison tables report.
    horizons: tuple[int, ...] = (1, 4, 16)
    #: per-model subsets of ``horizons`` (a model not named here trains for all of them);
    #: each must include train.label's horizon. The ensemble of a horizon stacks the models
    #: trained for it.
    model_horizons: dict[str, tuple[int, ...]] = Field(default_factory=dict)
    #: torch intra-op threads of the Chronos and transformer stages (1: fastest on 2 shared cores).
    torch_threads: int = Field(default=1, ge=1, le=64)
    baselines: BaselineConfig = BaselineConfig()
    lightgbm: LightGBMZooConfig = LightGBMZooConfig()
    chronos: ChronosConfig = ChronosConfig()
    #: TransformerConfig fields; validated by :func:`check_deferred` (its module imports torch).
    transformer: dict[str, Any] = Field(default_factory=dict)

    def horizons_of(self, name: str) -> tuple[int, ...]:
        """The horizons model ``name`` trains for, in ``horizons`` order."""
        subset = self.model_horizons.get(name)
        return self.horizons if subset is None else tuple(h for h in self.horizons
                                                          if h in subset)

    @model_validator(mode="after")
    def _known_models(self) -> ModelsParams:
        check_model_names(self.run)
        for name, subset in self.model_horizons.items():
            check_model_names([name], "models.model_horizons")
            extra = [h for h in subset if h not in self.horizons]
            if extra or not subset:
                raise ValueError(f"models.model_horizons.{name} {list(subset)} must be a "
                                 f"non-empty subset of models.horizons {list(self.horizons)}")
        if not self.horizons or len(set(self.horizons)) != len(self.horizons) or any(
                h < 1 for h in self.horizons):
            raise ValueError(f"models.horizons must be distinct positive integers, got "
                             f"{list(self.horizons)}")
        return self


class EnsembleParams(_Frozen):
    """The stacked ensemble, its out-of-sample evaluation and the champion rule."""

    registered_model: str = "candlecast-ensemble"
    #: the ensemble is scored on OOF fold k using folds < k only, from this fold on.
    min_train_folds: int = Field(default=1, ge=1)
    #: the champion decision compares the model + policy on the latest this-many scored folds.
    decision_folds: int = Field(default=1, ge=1)
    #: fewest bars (per series) the champion comparison may rest on (else the new model is
    #: only a challenger).
    min_decision_rows: int = Field(default=500, ge=1)
    #: what the champion rule compares: the net Sharpe or Calmar ratio of model + policy
    criterion: Literal["sharpe", "calmar"] = "sharpe"
    #: log-loss guards of the champion rule: never above this (a coin flip is ln 2 = 0.6931)...
    max_log_loss: float = Field(default=0.6940, gt=0)
    #: ...and never more than this above the champion's on the same rows
    log_loss_tolerance: float = Field(default=0.005, ge=0)
    #: feature rows per series the served ensemble reads (context of the sequence models and
    #: GARCH warm-up); at least every base model's context + 1.
    window_rows: int = Field(default=128, ge=1, le=10_000)
    #: extra meta-learner inputs besides the base models' probabilities.
    extras: tuple[Literal["garch_vol", "regime", "chronos_spread"], ...] = (
        "garch_vol", "regime", "chronos_spread",
    )
    #: EnsembleConfig fields (calibration, inner_folds, C, clip); the horizon comes from the
    #: label. Validated by :func:`check_deferred` (its module imports scikit-learn).
    stacking: dict[str, Any] = Field(default_factory=dict)
    #: who moves the ``champion`` alias: ``net_return`` (the register stage, the rule of
    #: ``candlecast.models.champion``) or ``defer`` (register as ``challenger`` only; the ops
    #: retrain flow decides with a backtest and a significance test)
    promotion: Literal["net_return", "defer"] = "net_return"


#: Sections whose config classes live in modules with heavy imports (torch, scikit-learn,
#: arch): kept as mappings at load and validated on demand, so that loading params stays fast
#: for every stage. ``check_deferred`` validates them all (the zoo stages call it first).
_DEFERRED: dict[str, str] = {
    "garch": "candlecast.models.regime:GarchConfig",
    "regime": "candlecast.models.regime:RegimeConfig",
    "ensemble.stacking": "candlecast.models.stacking:EnsembleConfig",
    "models.transformer": "candlecast.models.transformer:TransformerConfig",
}
_LABEL = re.compile(r"^label_up_(\d+)$")
class BacktestParams(_Frozen):
    """What the `backtest` stage replays: which model's out-of-sample forecasts (traded by the
    walk-forward policy of the ``policy`` stage), the rule baselines beside it, and the run
    settings (``run``: initial equity per series, shorting allowed at all)."""

    predictions: str = "models/ensemble/oof.parquet"
    model: str = "ensemble"
    run_info: str = "models/ensemble/summary.json"
    #: configurations tried to reach the policy (deflates the Sharpe); None: counted from the
    #: policy searches, the PBO universe, the rule baselines and the LightGBM tuning trials
    n_trials: int | None = Field(default=None, ge=1)
    #: configurations of earlier design iterations whose results on these same windows were
    #: looked at before this configuration was run (declared by the researcher; counted in the
    #: deflated Sharpe's number of trials on top of this run's own)
    prior_trials: int = Field(default=0, ge=0)
    rules: RuleConfig = RuleConfig()
    run: BacktestConfig = BacktestConfig()


class PolicyParams(_Frozen):
    """The decision layer (docs/policy.md): the configuration used where nothing could be
    tuned (the first scored fold has no earlier out-of-sample forecasts), the search space and
    the search."""

    default: PolicyConfig = PolicyConfig()
    search: PolicySearchSpace = PolicySearchSpace()
    tuning: PolicyTuning = PolicyTuning()


class Params(_Frozen):
    ingest: IngestParams = IngestParams()
    validate_: ValidationConfig = Field(default_factory=ValidationConfig, alias="validate")
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    feature_store: FeatureStoreParams = FeatureStoreParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()
    walk_forward: WalkForwardParams = WalkForwardParams()
    models: ModelsParams = ModelsParams()
    #: GarchConfig fields (GARCH(1,1) per series and fold), validated by :func:`check_deferred`.
    garch: dict[str, Any] = Field(default_factory=dict)
    #: RegimeConfig fields (Gaussian-mixture regimes), validated by :func:`check_deferred`.
    regime: dict[str, Any] = Field(default_factory=dict)
    ensemble: EnsembleParams = EnsembleParams()
    risk: RiskConfig = Field(default_factory=RiskConfig)
    costs: CostConfig = Field(default_factory=CostConfig)
    backtest: BacktestParams = BacktestParams()
    policy: PolicyParams = PolicyParams()
    trade: TradeConfig = Field(default_factory=TradeConfig)
    #: the signal service; features, feature service, MLflow store and risk come from their own
    #: sections (see :func:`candlecast.serving.config.compose_serving_config`)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    #: the operations loop: drift thresholds, promotion rule, replay, alerts (docs/operations.md)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    #: the operator's console: dashboard and Telegram bot (docs/console.md)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    #: where the stages' units of work run (task runner; docs/scale-out.md). Not a DVC param
    #: of any stage: the runner never changes a result (tested)
    compute: ComputeConfig = ComputeConfig()
    #: cross-sectional features of the universe (off unless the portfolio path runs)
    cross_section: CrossSectionConfig = Field(default_factory=CrossSectionConfig)
    #: many coins in one book (docs/portfolio.md): `candlecast portfolio`
    portfolio: PortfolioParams = Field(default_factory=PortfolioParams)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _zoo_consistent(self) -> Params:
        horizon = self.label_horizon
        if f"fwd_logret_{horizon}" != self.train.target_return:
            raise ValueError(
                f"train.target_return must be fwd_logret_{horizon} to match train.label "
                f"{self.train.label!r}, got {self.train.target_return!r}"
            )
        unknown = [h for h in self.models.horizons if h not in self.labels.horizons]
        if unknown:
            raise ValueError(f"models.horizons {unknown} are not in labels.horizons "
                             f"{list(self.labels.horizons)}: there is no label to train on")
        for name in self.models.run:
            if horizon not in self.models.horizons_of(name):
                raise ValueError(f"the horizons of model {name} "
                                 f"{list(self.models.horizons_of(name))} must include the "
                                 f"horizon of train.label {self.train.label!r} ({horizon})")
        untrained = [h for h in (*self.policy.search.horizons, self.policy.default.horizon)
                     if h not in self.models.horizons]
        if untrained:
            raise ValueError(f"policy horizons {sorted(set(untrained))} are not trained: add "
                             f"them to models.horizons {list(self.models.horizons)}")
        vol_window = int(self.regime.get("vol_window", 48))
        trend_window = int(self.regime.get("trend_window", 48))
        if vol_window not in self.features.vol_windows:
            raise ValueError(
                f"regime.vol_window ({vol_window}) must be one of features.vol_windows "
                f"{list(self.features.vol_windows)}: regimes read the rv_<window> feature"
            )
        if trend_window not in self.features.return_horizons:
            raise ValueError(
                f"regime.trend_window ({trend_window}) must be one of features.return_horizons "
                f"{list(self.features.return_horizons)}: regimes read the logret_<window> feature"
            )
        if self.cross_section.enabled:
            self._portfolio_consistent()
        folds = self.walk_forward.max_folds
        needed = self.ensemble.min_train_folds + self.ensemble.decision_folds
        if folds is not None and folds < needed:
            raise ValueError(
                f"walk_forward.max_folds ({folds}) must be at least ensemble.min_train_folds + "
                f"ensemble.decision_folds = {needed}: the ensemble is scored out of sample on "
                "later folds only"
            )
        return self

    def _portfolio_consistent(self) -> None:
        """The cross-section's inputs exist; the portfolio's horizons are trained."""
        self.cross_section.check(feature_names(self.features), self.ingest.symbols)
        unknown = [h for h in self.cross_section.relative_horizons
                   if h not in self.features.return_horizons]
        if unknown:
            raise ValueError(f"cross_section.relative_horizons {unknown} are not in "
                             f"features.return_horizons {list(self.features.return_horizons)}")
        pf = self.portfolio
        untrained = [h for h in (*pf.search.horizons, pf.default.horizon)
                     if h not in self.models.horizons]
        if untrained:
            raise ValueError(f"portfolio horizons {sorted(set(untrained))} are not trained: add "
                             f"them to models.horizons {list(self.models.horizons)}")
        if pf.baselines.hold_symbol not in self.ingest.symbols:
            raise ValueError(f"portfolio.baselines.hold_symbol {pf.baselines.hold_symbol!r} is "
                             f"not in ingest.symbols {list(self.ingest.symbols)}")

    @property
    def label_horizon(self) -> int:
        """Bars ahead of ``train.label`` (``label_up_<h>``); must be one of labels.horizons."""
        match = _LABEL.match(self.train.label)
        if match is None:
            raise ValueError(f"train.label must look like label_up_<h>, got {self.train.label!r}")
        horizon = int(match.group(1))
        if horizon not in self.labels.horizons:
            raise ValueError(
                f"train.label {self.train.label!r} needs horizon {horizon} in labels.horizons "
                f"{list(self.labels.horizons)}"
            )
        return horizon

    @property
    def zoo_horizon(self) -> int:
        """The longest horizon the zoo trains: the folds are purged by it for every horizon."""
        return max(self.models.horizons)

    def walk_forward_config(self) -> WalkForwardConfig:
        return self.walk_forward.config(self.zoo_horizon)

    def deferred(self, section: str) -> Any:
        """The validated config object of a deferred section (see ``_DEFERRED``)."""
        module, name = _DEFERRED[section].split(":")
        cls = getattr(importlib.import_module(module), name)
        values = dict(self._section(section))
        if section == "ensemble.stacking":
            values.setdefault("horizon", self.label_horizon)
        try:
            return cls(**values)
        except ValidationError as err:
            raise ParamsError(f"invalid params: {_describe(err, section)}") from err

    def _section(self, section: str) -> dict[str, Any]:
        node: Any = self
        for part in section.split("."):
            node = getattr(node, part)
        return node

    def hash(self) -> str:
        """A short stable hash of every parameter (lineage on models and reports)."""
        # not ``compute``: where the units ran is not what was computed
        blob = json.dumps(
            self.model_dump(mode="json", by_alias=True, exclude={"compute"}), sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def check_deferred(params: Params) -> None:
    """Validate every deferred section (imports torch, scikit-learn and arch; a few seconds)."""
    for section in _DEFERRED:
        if section == "models.transformer" and "transformer" not in params.models.run:
            continue
        params.deferred(section)


def check_model_files(params: Params, root: Path) -> None:
    """Check files params point at (the Chronos checkpoint) relative to the project ``root``."""
    if "chronos" in params.models.run:
        section = resolve_checkpoint(params.models.chronos, root)
        try:
            check_checkpoint(section.checkpoint)
        except ValueError as exc:
            raise ParamsError(f"invalid params: models.chronos.checkpoint: {exc}") from exc


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or has a value of the wrong type or range."""


def _describe(err: ValidationError, prefix: str = "") -> str:
    """``where: what`` of a validation error's first problem (``got`` for field errors)."""
    first = err.errors()[0]
    where = ".".join([p for p in (prefix,) if p] + [str(p) for p in first["loc"]]) or "params"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "value_error":
        return f"{where}: {message}"
    return f"{where}: {message} (got {first.get('input')!r})"


def parse_params(raw: dict[str, Any]) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(f"invalid params: {_describe(err)}") from err


#: a params profile merged over params.yaml at load (``services/services.env`` sets it)
PROFILE_ENV = "CANDLECAST_PROFILE"


def load_params(
    path: str | Path = "params.yaml", environ: Mapping[str, str] | None = None
) -> Params:
    """``params.yaml`` validated; with ``$CANDLECAST_PROFILE`` (a path relative to the params
    file's folder) that profile merged over it, ``${VAR}`` in the profile taken from the
    environment (the services' addresses: profiles/services.yaml). A profile moves where things
    run (MLflow, Optuna, the online store, the task runner), so DVC does not track it: results
    must not depend on it."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    raw = _read_yaml(path)
    profile = environ.get(PROFILE_ENV)
    if profile:
        where = Path(profile) if Path(profile).is_absolute() else path.resolve().parent / profile
        raw = deep_merge(raw, _read_yaml(where, expand=environ))
    params = parse_params(raw)
    check_model_files(params, path.resolve().parent)
    return params


def _read_yaml(path: Path, expand: Mapping[str, str] | None = None) -> dict[str, Any]:
    if not path.exists():
        raise ParamsError(f"params file {path} does not exist")
    text = path.read_text()
    if expand is not None:
        text = _expand(text, expand, path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"params file {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections")
    return raw


def _expand(text: str, environ: Mapping[str, str], path: Path) -> str:
    """``${NAME}`` replaced from ``environ``; an unset name is an error naming it."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ParamsError(f"params profile {path} needs ${{{name}}} in the environment "
                              "(source services/services.env)")
        return environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value, text)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay``'s values merged in, mapping by mapping (lists are replaced).

    Used to apply a params profile such as ``profiles/quick.yaml`` on top of ``params.yaml``.
    """
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
