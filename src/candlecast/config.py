"""The typed, frozen parameters of a pipeline run, loaded once at the edge from ``params.yaml``.

Each domain package owns the model of its own section; this module only composes them and
checks cross-section consistency. Nothing else reads ``params.yaml``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.data.ingest import CcxtIngestConfig
from candlecast.data.sample import DATASETS
from candlecast.data.schema import SeriesId, timeframe_to_timedelta
from candlecast.features import FeatureConfig, LabelConfig
from candlecast.risk.config import RiskConfig
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


class LightGBMParams(_Frozen):
    n_estimators: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.03, gt=0, le=1)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=200, ge=1)
    subsample: float = Field(default=0.8, gt=0, le=1)
    subsample_freq: int = Field(default=1, ge=0)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    early_stopping_rounds: int = Field(default=50, ge=1)


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


class BacktestParams(_Frozen):
    """What the `backtest` stage replays: which model's out-of-sample predictions, how they
    become signals, and the run settings (``run``: initial equity, shorting, re-entry)."""

    predictions: str = "models/lightgbm/predictions.parquet"
    model: str = "lightgbm"
    run_info: str = "models/lightgbm/train_summary.json"
    band: float = Field(default=0.02, ge=0, lt=0.5)
    n_trials: int = Field(default=1, ge=1)
    run: BacktestConfig = BacktestConfig()


class Params(_Frozen):
    ingest: IngestParams = IngestParams()
    validate_: ValidationConfig = Field(default_factory=ValidationConfig, alias="validate")
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    feature_store: FeatureStoreParams = FeatureStoreParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()
    risk: RiskConfig = Field(default_factory=RiskConfig)
    costs: CostConfig = Field(default_factory=CostConfig)
    backtest: BacktestParams = BacktestParams()
    trade: TradeConfig = Field(default_factory=TradeConfig)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def hash(self) -> str:
        """A short stable hash of every parameter (lineage on models and reports)."""
        blob = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or has a value of the wrong type or range."""


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "params"
    got = first.get("input")
    return f"{where}: {first['msg']} (got {got!r})"


def parse_params(raw: dict[str, Any]) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(f"invalid params: {_describe(err)}") from err


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"params file {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections")
    return parse_params(raw)
