"""Where every stage reads and writes, relative to the project root (mirrors ``dvc.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    # One property per location, on purpose (typed, greppable, one line of dvc.yaml each): the
    # duplicates tool pairs runs of them (and ZooPaths') by shape.
    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def sample(self) -> Path:
        return self.root / "data" / "sample"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def validated(self) -> Path:
        return self.root / "data" / "validated"

    @property
    def quarantine(self) -> Path:
        return self.root / "data" / "quarantine"

    @property
    def expectations(self) -> Path:
        return self.root / "expectations"

    @property
    def validation_reports(self) -> Path:
        return self.root / "reports" / "validation"

    @property
    def features_dir(self) -> Path:
        return self.root / "data" / "features"

    @property
    def features(self) -> Path:
        return self.features_dir / "features.parquet"

    @property
    def labels(self) -> Path:
        return self.features_dir / "labels.parquet"

    @property
    def cross_section(self) -> Path:
        """Per-coin cross-sectional features (the portfolio path's coin view)."""
        return self.features_dir / "cross_section.parquet"

    @property
    def universe_features(self) -> Path:
        """Universe-level features (the portfolio path's universe view)."""
        return self.features_dir / "universe.parquet"

    @property
    def cross_section_labels(self) -> Path:
        """Relative targets: each coin's forward return minus the basket's."""
        return self.features_dir / "cross_section_labels.parquet"

    @property
    def feature_repo(self) -> Path:
        return self.root / "feature_repo"

    @property
    def feast_data(self) -> Path:
        return self.root / "data" / "feast"

    @property
    def training_set(self) -> Path:
        return self.root / "data" / "training" / "dataset.parquet"

    @property
    def lightgbm_dir(self) -> Path:
        return self.root / "models" / "lightgbm"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def plots(self) -> Path:
        return self.root / "plots"
