"""A small temporal-attention transformer over the last N candles' features.

Each row is classified from the window of the ``window`` most recent feature rows of its own
series, ending at the row itself (:mod:`candlecast.models.sequence_windows`: never a later
row; slots without a candle are masked out of attention). Features are standardised with
statistics of the training rows only, NaN becomes the training mean (0 after scaling), and
values are clipped to ``±clip`` standard deviations; non-finite values count as missing.

The network (:class:`TemporalAttentionNet`) is a PyTorch Lightning module: the current
candle's token attends over the window's tokens (features projected + learned positions),
optionally after ``num_layers`` full self-attention layers, and a logistic head reads it.
:class:`TransformerDirectionModel` wraps it in the ``DirectionModel`` interface: seeded,
deterministic on CPU, early stopping on the validation set, best weights kept via
``ModelCheckpoint``.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from candlecast.models.base import NotFittedError, check_fit_inputs, require_columns
from candlecast.models.sequence_windows import (
    MISSING,
    SeriesGrid,
    gather_windows,
    last_window,
    latest_rows,
    series_grids,
    window_index,
)


class TransformerConfig(BaseModel):
    """Architecture, training and data layout of the transformer; defaults suit 2 CPU cores
    (a fold of ~10k rows x ~40 features trains in well under 30 s)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Candles per window (the row itself and the window - 1 before it).
    window: int = Field(default=32, ge=1, le=1024)
    #: Feature columns; None = every numeric column except the series and timestamp columns
    #: and columns starting with ``exclude_prefixes`` (labels, forward returns). Prefer an
    #: explicit list in pipelines.
    feature_columns: tuple[str, ...] | None = None
    exclude_prefixes: tuple[str, ...] = ("label", "fwd_")
    series_column: str | None = "series_id"
    timestamp_column: str | None = "event_timestamp"

    d_model: int = Field(default=32, ge=4)
    num_heads: int = Field(default=4, ge=1)
    #: Full self-attention layers before the current candle's attention over the window.
    num_layers: int = Field(default=0, ge=0, le=8)
    dim_feedforward: int = Field(default=64, ge=4)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: Standardised features are clipped to +-clip.
    clip: float = Field(default=10.0, gt=0.0)

    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    batch_size: int = Field(default=256, ge=1)
    max_epochs: int = Field(default=8, ge=1)
    #: Early stopping: epochs without validation-loss improvement before stopping.
    patience: int = Field(default=2, ge=0)
    gradient_clip_val: float = Field(default=1.0, ge=0.0)
    #: Without X_val: the latest fraction of each series' training rows is the validation set,
    #: separated from the rest by ``purge`` rows (set it to the label horizon).
    val_fraction: float = Field(default=0.15, gt=0.0, lt=0.5)
    purge: int = Field(default=1, ge=0)

    seed: int = 0
    #: ModelCheckpoint directory; None = a temporary directory removed after fit.
    checkpoint_dir: Path | None = None
    enable_progress_bar: bool = False
    predict_batch_size: int = Field(default=2048, ge=1)

    @model_validator(mode="after")
    def _check_heads(self) -> TransformerConfig:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class TemporalAttentionNet(pl.LightningModule):
    """Temporal attention over a window of candles; logit of P(up) for the last candle.

    Tokens are a linear projection of each candle's features plus a learned position
    embedding (initialised at unit scale so attention can find "the candle k steps ago").
    ``num_layers`` optional full self-attention layers, then the current candle's token queries
    the whole window once (multi-head attention, pre-norm, feed-forward), and a linear head
    gives the logit. Querying with the last token only keeps the cost ~window times below a
    full encoder layer, which is what makes per-fold training on 2 cores fast.
    """

    def __init__(
        self,
        n_features: int,
        window: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        dim_feedforward: int,
        dropout: float,
        learning_rate: float,
        weight_decay: float,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.input_projection = nn.Linear(n_features, d_model)
        self.position = nn.Parameter(torch.randn(1, window, d_model))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, num_heads, dim_feedforward, dropout, batch_first=True, norm_first=True
            )
            for _ in range(num_layers)
        )
        self.query_norm = nn.LayerNorm(d_model)
        self.memory_norm = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        self.output_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)
        self.loss = nn.BCEWithLogitsLoss()

    def forward(self, x: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, window, features), ``missing`` (batch, window) True = no candle (the
        last slot, the row itself, is always present). Returns logits (batch,)."""
        tokens = self.input_projection(x) + self.position
        for layer in self.layers:
            tokens = layer(tokens, src_key_padding_mask=missing)
        query = tokens[:, -1:]
        memory = self.memory_norm(tokens)
        attended, _ = self.attention(
            self.query_norm(query), memory, memory, key_padding_mask=missing, need_weights=False
        )
        hidden = query + attended
        hidden = hidden + self.feedforward(self.feedforward_norm(hidden))
        return self.head(self.output_norm(hidden[:, 0])).squeeze(-1)

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        x, missing, y = batch
        loss = self.loss(self(x, missing), y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )


class _Windows:
    """Rows of a standardised feature matrix, served as (window, missing-mask, label) batches."""

    def __init__(self, features: np.ndarray, index: np.ndarray, labels: np.ndarray | None):
        self.features, self.index, self.labels = features, index, labels

    def collate(self, rows: list[int]) -> tuple[torch.Tensor, ...]:
        index = self.index[rows]
        x = torch.from_numpy(gather_windows(self.features, index, 0.0))
        missing = torch.from_numpy(index == MISSING)
        if self.labels is None:
            return x, missing
        return x, missing, torch.from_numpy(self.labels[rows])

    def loader(self, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        rows: Any = list(range(len(self.index)))  # a list is a valid map-style dataset
        return DataLoader(
            rows,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            generator=generator,
            num_workers=0,
        )


def _inner_validation_rows(grids: list[SeriesGrid], fraction: float, purge: int) -> np.ndarray:
    """Role of each training row when no X_val is given: 0 train, 1 validation (the latest
    ``fraction`` of each series' rows in time), 2 purged (the ``purge`` rows just before)."""
    role = np.zeros(sum(len(g.rows) for g in grids), dtype=np.int8)  # 0 train, 1 val, 2 purged
    for grid in grids:
        n_val = int(np.ceil(fraction * len(grid.rows)))
        if len(grid.rows) - n_val - purge < 1:
            raise ValueError(
                f"series {grid.key!r} has {len(grid.rows)} training rows: too few to hold out "
                f"{fraction:.0%} for validation (pass X_val instead)"
            )
        role[grid.rows[-n_val:]] = 1
        if purge:
            role[grid.rows[-n_val - purge : -n_val]] = 2
    return role


@contextmanager
def _quiet_lightning(show: bool) -> Iterator[None]:
    """Hide Lightning's info banner and its performance hints unless ``show``; restore the
    process-wide deterministic-algorithms flag that ``deterministic=True`` switches on."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings():
            if not show:
                for lg in loggers:
                    lg.setLevel(logging.WARNING)
                warnings.filterwarnings("ignore", module=r"pytorch_lightning\..*")
                warnings.filterwarnings("ignore", module=r"lightning_fabric\..*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        torch.use_deterministic_algorithms(deterministic)


class TransformerDirectionModel:
    """Temporal-attention transformer implementing ``DirectionModel`` (family "neural")."""

    family = "neural"

    def __init__(self, config: TransformerConfig | None = None, *, name: str = "transformer"):
        self.config = config or TransformerConfig()
        self.name = name
        self.feature_columns_: tuple[str, ...] | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.net_: TemporalAttentionNet | None = None
        self.best_val_loss_: float | None = None
        self.epochs_trained_: int | None = None

    # ---------------------------------------------------------------- features

    def _select_features(self, X: pd.DataFrame) -> tuple[str, ...]:
        cfg = self.config
        if cfg.feature_columns is not None:
            require_columns(X, cfg.feature_columns, f"model {self.name!r}")
            return cfg.feature_columns
        skip = {cfg.series_column, cfg.timestamp_column}
        names = tuple(
            c
            for c in X.columns
            if c not in skip
            and not str(c).startswith(cfg.exclude_prefixes)
            and (pd.api.types.is_numeric_dtype(X[c]) or X[c].dtype == bool)
        )
        if not names:
            raise ValueError(f"model {self.name!r} found no numeric feature columns in X")
        return names

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        assert self.feature_columns_ is not None and self.mean_ is not None
        require_columns(X, self.feature_columns_, f"model {self.name!r}")
        scaled = (self._raw(X) - self.mean_) / self.scale_
        clip = self.config.clip
        return np.clip(np.nan_to_num(scaled, nan=0.0), -clip, clip)

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        """The feature columns as floats, non-finite values (a log of zero volume) as NaN."""
        assert self.feature_columns_ is not None
        raw = X.loc[:, list(self.feature_columns_)].to_numpy(dtype=np.float64)
        return np.where(np.isfinite(raw), raw, np.nan)

    def _windows(
        self, X: pd.DataFrame, labels: np.ndarray | None, latest_only: bool = False
    ) -> tuple[_Windows, np.ndarray]:
        """Windows of every row (or of each series' latest row) and the frame rows they end at."""
        cfg = self.config
        grids = series_grids(X, cfg.series_column, cfg.timestamp_column)
        index = window_index(grids, len(X), cfg.window)
        rows = latest_rows(grids) if latest_only else np.arange(len(X))
        return _Windows(self._matrix(X).astype(np.float32), index[rows], labels), rows

    # ---------------------------------------------------------------- fit

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_val: pd.DataFrame | None = None,
        y_val: pd.Series | None = None,
    ) -> Self:
        cfg = self.config
        labels = check_fit_inputs(X, y).astype(np.float32)
        self.net_ = None
        self.feature_columns_ = self._select_features(X)
        if X_val is not None:
            if y_val is None:
                raise ValueError("X_val was given without y_val")
            val_labels = check_fit_inputs(X_val, y_val, "validation").astype(np.float32)
            train_rows = np.arange(len(X))
        else:
            grids = series_grids(X, cfg.series_column, cfg.timestamp_column)
            role = _inner_validation_rows(grids, cfg.val_fraction, cfg.purge)
            train_rows = np.flatnonzero(role == 0)

        raw = self._raw(X)[train_rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> mean 0, scale 1
            mean = np.nanmean(raw, axis=0)
            scale = np.nanstd(raw, axis=0)
        self.mean_ = np.nan_to_num(mean, nan=0.0)
        self.scale_ = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)

        full, _ = self._windows(X, labels)
        if X_val is not None:
            train, val = full, self._windows(X_val, val_labels)[0]
        else:
            train = _Windows(full.features, full.index[train_rows], labels[train_rows])
            val_rows = np.flatnonzero(role == 1)
            val = _Windows(full.features, full.index[val_rows], labels[val_rows])
        self.net_ = self._train(train, val)
        return self

    def _train(self, train: _Windows, val: _Windows) -> TemporalAttentionNet:
        cfg = self.config
        with _quiet_lightning(cfg.enable_progress_bar), _checkpoint_dir(cfg.checkpoint_dir) as out:
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            net = TemporalAttentionNet(
                n_features=train.features.shape[1],
                window=cfg.window,
                d_model=cfg.d_model,
                num_heads=cfg.num_heads,
                num_layers=cfg.num_layers,
                dim_feedforward=cfg.dim_feedforward,
                dropout=cfg.dropout,
                learning_rate=cfg.learning_rate,
                weight_decay=cfg.weight_decay,
            )
            checkpoint = ModelCheckpoint(
                dirpath=out,
                filename=f"{self.name}-best",
                monitor="val_loss",
                mode="min",
                save_top_k=1,
                enable_version_counter=False,
            )
            trainer = pl.Trainer(
                accelerator="cpu",
                devices=1,
                max_epochs=cfg.max_epochs,
                deterministic=True,
                enable_progress_bar=cfg.enable_progress_bar,
                enable_model_summary=False,
                logger=False,
                num_sanity_val_steps=0,
                gradient_clip_val=cfg.gradient_clip_val,
                callbacks=[
                    EarlyStopping("val_loss", patience=cfg.patience, mode="min"),
                    checkpoint,
                ],
            )
            trainer.fit(
                net,
                train_dataloaders=train.loader(cfg.batch_size, shuffle=True, seed=cfg.seed),
                val_dataloaders=val.loader(cfg.predict_batch_size, shuffle=False, seed=cfg.seed),
            )
            state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
            net.load_state_dict(state["state_dict"])
            best = checkpoint.best_model_score
            self.best_val_loss_ = float(best) if best is not None else None
            self.epochs_trained_ = int(trainer.current_epoch)
        return net.eval()

    # ---------------------------------------------------------------- predict

    def predict_proba_up(self, X: pd.DataFrame) -> np.ndarray:
        self._require_fitted()
        return self._predict(self._windows(X, None)[0])

    def predict_latest(self, X: pd.DataFrame) -> pd.DataFrame:
        """``p_up`` of the latest row of each series only, the rest of ``X`` serving as its
        window (live inference), indexed like those rows of ``X``."""
        self._require_fitted()
        windows, rows = self._windows(X, None, latest_only=True)
        return pd.DataFrame({"p_up": self._predict(windows)}, index=X.index[rows])

    def predict_last(
        self, values: np.ndarray, columns: Sequence[str], ns: np.ndarray | None
    ) -> float:
        """P(up) of the LATEST row of ONE series given as arrays: ``values`` ``(n, len(columns))``
        feature rows (any column order; the model picks its own), ``ns`` int64 timestamps (None:
        consecutive rows). Same window, scaling and network as :meth:`predict_proba_up` on a
        frame of those rows, one window in one forward pass (float32: a batch of one may differ
        from a larger batch in the last bits)."""
        net = self._require_fitted()
        assert self.feature_columns_ is not None and self.mean_ is not None
        cfg = self.config
        picks = self._column_picks(tuple(columns))
        use_time = cfg.timestamp_column is not None and ns is not None
        index = last_window(ns if use_time else None, len(values), cfg.window,
                            column=cfg.timestamp_column or "timestamp")
        raw = np.asarray(values, dtype=np.float64)[:, picks]
        raw = np.where(np.isfinite(raw), raw, np.nan)
        scaled = (raw - self.mean_) / self.scale_
        matrix = np.clip(np.nan_to_num(scaled, nan=0.0), -cfg.clip, cfg.clip).astype(np.float32)
        x = torch.from_numpy(gather_windows(matrix, index[None, :], 0.0))
        missing = torch.from_numpy(index[None, :] == MISSING)
        with torch.inference_mode():
            return float(torch.sigmoid(net(x, missing)).numpy().astype(np.float64)[0])

    def _column_picks(self, columns: tuple[str, ...]) -> np.ndarray:
        """Positions of the model's feature columns in ``columns`` (cached per layout)."""
        cache: dict[tuple[str, ...], np.ndarray] = self.__dict__.setdefault("_picks", {})
        picks = cache.get(columns)
        if picks is None:
            assert self.feature_columns_ is not None
            missing = [c for c in self.feature_columns_ if c not in columns]
            if missing:
                raise ValueError(f"model {self.name!r} lacks required columns {missing[:8]}")
            picks = cache[columns] = np.array([columns.index(c) for c in self.feature_columns_])
        return picks

    def _require_fitted(self) -> TemporalAttentionNet:
        if self.net_ is None:
            raise NotFittedError(f"model {self.name!r} must be fit before predicting")
        return self.net_

    def _predict(self, windows: _Windows) -> np.ndarray:
        net = self._require_fitted()
        out = []
        with torch.inference_mode():
            for x, missing in windows.loader(self.config.predict_batch_size, False, 0):
                out.append(torch.sigmoid(net(x, missing)).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.empty(0)

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> Path:
        """One file with config, feature list, scaler and weights (``torch.save``)."""
        if self.net_ is None:
            raise NotFittedError(f"model {self.name!r} must be fit before saving")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "name": self.name,
                "config": self.config.model_dump(mode="json"),
                "feature_columns": list(self.feature_columns_ or ()),
                "mean": torch.from_numpy(np.asarray(self.mean_)),
                "scale": torch.from_numpy(np.asarray(self.scale_)),
                "hparams": dict(self.net_.hparams),
                "state_dict": self.net_.state_dict(),
            },
            target,
        )
        return target

    @classmethod
    def load(cls, path: str | Path) -> TransformerDirectionModel:
        """A fitted model from :meth:`save`'s file (tensors and plain values only)."""
        payload: dict[str, Any] = torch.load(Path(path), map_location="cpu", weights_only=True)
        model = cls(TransformerConfig(**payload["config"]), name=payload["name"])
        model.feature_columns_ = tuple(payload["feature_columns"])
        model.mean_, model.scale_ = payload["mean"].numpy(), payload["scale"].numpy()
        net = TemporalAttentionNet(**payload["hparams"])
        net.load_state_dict(payload["state_dict"])
        model.net_ = net.eval()
        return model


@contextmanager
def _checkpoint_dir(configured: Path | None) -> Iterator[Path]:
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="candlecast-transformer-") as tmp:
        yield Path(tmp)
