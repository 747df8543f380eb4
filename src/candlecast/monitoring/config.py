"""Thresholds of the drift check (``ops.drift`` in params.yaml) and the alert webhook
(``ops.alerts``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DecayConfig(BaseModel):
    """Performance decay of the recent window against the reference (needs labels)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: fewest labelled recent rows before decay is judged at all
    min_rows: int = Field(default=200, ge=1)
    #: decayed if recent log loss exceeds the reference's by more than this
    max_log_loss_increase: float = Field(default=0.01, ge=0)
    #: decayed if recent accuracy is below the reference's by more than this
    max_accuracy_drop: float = Field(default=0.03, ge=0)
    #: decayed if the recent expected calibration error exceeds the reference's by more
    max_ece_increase: float = Field(default=0.05, ge=0)
    calibration_bins: int = Field(default=10, ge=2, le=100)


class DriftConfig(BaseModel):
    """Per-column drift = normed Wasserstein distance (W1 / std of the reference column).

    An effect size, not a p-value: it does not grow with the number of rows, so the strong
    autocorrelation of candle features (which makes KS/chi-square p-values flag almost any
    two windows) does not turn into false alarms. Same statistic as Evidently's
    ``wasserstein`` stat test, so the report and the verdict agree.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: a feature drifted if its normed Wasserstein distance is at least this
    feature_threshold: float = Field(default=0.5, gt=0)
    #: data drift if at least this share of the monitored features drifted
    drift_share: float = Field(default=0.5, gt=0, le=1)
    #: prediction drift if P(up)'s normed Wasserstein distance is at least this
    prediction_threshold: float = Field(default=0.5, gt=0)
    #: bars per series of the recent window (the latest rows the champion never trained on)
    recent_bars: int = Field(default=1000, ge=10)
    #: bars per series of the reference window (the end of the champion's training data)
    reference_bars: int = Field(default=8000, ge=10)
    #: fewest rows (all series) either window must have; fewer -> no verdict (error)
    min_rows: int = Field(default=100, ge=10)
    #: features not monitored (e.g. calendar encodings)
    exclude: tuple[str, ...] = ()
    decay: DecayConfig = DecayConfig()
    #: where HTML reports and verdicts go, relative to the project root
    report_dir: str = "reports/drift"


class AlertConfig(BaseModel):
    """The webhook notifier; its URL comes from the environment variable named here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_env: str = "CANDLECAST_ALERT_WEBHOOK"
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0)
