"""Volatility forecast (GARCH(1,1)) and market regimes (Gaussian mixture on vol/trend).

Both are fitted on a fold's training part only and then applied forward without refitting:

* :class:`GarchVolatility` estimates GARCH(1,1) with the ``arch`` package and then filters any
  return series (training plus test) with the frozen parameters. The value at row ``t`` is the
  one-step-ahead forecast of the NEXT bar's volatility, using returns up to and including ``t``
  only, so it sits beside the features of row ``t`` without look-ahead.
* :class:`GaussianRegimes` fits a Gaussian mixture on causal volatility/trend features and labels
  components by their mean volatility, so regime 0 is always the calmest, in every fold.

Outputs (``garch_vol``, ``regime_<k>`` probabilities, the hard ``regime`` label) feed the
ensemble as extra inputs and group the per-regime metrics.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Self

import numpy as np
import pandas as pd
from arch import arch_model
from pydantic import BaseModel, ConfigDict, Field
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from candlecast.models.base import NotFittedError


class GarchConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: Literal["constant", "zero"] = "constant"
    dist: Literal["normal", "t"] = "normal"
    #: returns are multiplied by this before fitting (the optimiser prefers values near 1).
    scale: float = Field(default=100.0, gt=0)
    min_observations: int = Field(default=250, ge=30)


class GarchVolatility:
    """GARCH(1,1) on log returns; forward filtering with parameters frozen at fit time."""

    name = "garch"
    family = "regime"

    def __init__(self, config: GarchConfig | None = None) -> None:
        self.config = config or GarchConfig()
        self.params_: dict[str, float] | None = None
        self.backcast_: float | None = None
        self.converged_: bool | None = None

    def fit(self, returns: pd.Series | np.ndarray) -> Self:
        """Estimate on training returns (NaN rows, e.g. the first return, are dropped)."""
        r = np.asarray(returns, dtype=float)
        r = r[~np.isnan(r)]
        if len(r) < self.config.min_observations:
            raise ValueError(
                f"GARCH needs at least {self.config.min_observations} training returns, "
                f"got {len(r)}"
            )
        if np.ptp(r) == 0:
            raise ValueError("GARCH cannot be fitted on constant returns")
        scaled = r * self.config.scale
        model = arch_model(
            scaled,
            mean="Constant" if self.config.mean == "constant" else "Zero",
            vol="GARCH",
            p=1,
            q=1,
            dist="normal" if self.config.dist == "normal" else "t",
            rescale=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(disp="off", show_warning=False)
        params = result.params
        self.params_ = {
            "mu": float(params.get("mu", 0.0)),
            "omega": float(params["omega"]),
            "alpha": float(params["alpha[1]"]),
            "beta": float(params["beta[1]"]),
        }
        self.converged_ = int(result.convergence_flag) == 0
        # the variance recursion starts from arch's backcast: an exponentially weighted mean of
        # the first squared residuals around the sample mean (as ``arch_model.fix`` does)
        resid = scaled - (scaled.mean() if self.config.mean == "constant" else 0.0)
        tau = min(75, len(resid))
        weights = 0.94 ** np.arange(tau)
        self.backcast_ = float(np.sum(resid[:tau] ** 2 * weights / weights.sum()))
        return self

    @property
    def persistence(self) -> float:
        """alpha + beta: how slowly volatility shocks decay (< 1 for a stationary model)."""
        p = self._params()
        return p["alpha"] + p["beta"]

    @property
    def unconditional_vol(self) -> float:
        """Long-run per-bar volatility in return units (NaN if the model is not stationary)."""
        p = self._params()
        if self.persistence >= 1:
            return float("nan")
        return float(np.sqrt(p["omega"] / (1 - self.persistence)) / self.config.scale)

    def _params(self) -> dict[str, float]:
        if self.params_ is None:
            raise NotFittedError("GARCH must be fitted before forecasting")
        return self.params_

    def filter(self, returns: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conditional vol of each bar and the one-step forecast made at its close.

        Returns ``(sigma, forecast)`` in return units: ``sigma[t]`` uses returns before ``t``;
        ``forecast[t]`` uses returns up to ``t`` and predicts bar ``t + 1``. The recursion starts
        from the training backcast. Missing returns (leading or interior) get NaN outputs and
        carry the variance forward by its expectation (``eps^2`` replaced by ``sigma^2``).
        """
        p = self._params()
        assert self.backcast_ is not None
        scaled = np.asarray(returns, dtype=float) * self.config.scale
        n = len(scaled)
        omega, alpha, beta, mu = p["omega"], p["alpha"], p["beta"], p["mu"]
        sigma2 = np.empty(n)
        forecast2 = np.empty(n)
        prev_eps2 = prev_sigma2 = self.backcast_
        for t in range(n):
            s2 = omega + alpha * prev_eps2 + beta * prev_sigma2
            eps = scaled[t] - mu
            eps2 = s2 if np.isnan(eps) else eps * eps
            sigma2[t] = s2
            forecast2[t] = omega + alpha * eps2 + beta * s2
            prev_eps2, prev_sigma2 = eps2, s2
        missing = np.isnan(scaled)
        sigma = np.sqrt(sigma2) / self.config.scale
        forecast = np.sqrt(forecast2) / self.config.scale
        sigma[missing] = np.nan
        forecast[missing] = np.nan
        return sigma, forecast

    def last_forecast(self, returns: pd.Series | np.ndarray) -> float:
        """The one-step vol forecast at the last bar with a return (NaN if none): what
        ``filter(returns)[1]`` carried forward to the last bar gives, the same recursion in
        plain floats (same operations in the same order, so the same number) without the
        per-bar arrays (the serving path needs only this value)."""
        p = self._params()
        assert self.backcast_ is not None
        scale = self.config.scale
        scaled = (np.asarray(returns, dtype=float) * scale).tolist()
        omega, alpha, beta, mu = p["omega"], p["alpha"], p["beta"], p["mu"]
        prev_eps2 = prev_sigma2 = self.backcast_
        last2 = math.nan
        for value in scaled:
            s2 = omega + alpha * prev_eps2 + beta * prev_sigma2
            eps = value - mu
            if eps != eps:  # a missing return: the variance carries its expectation
                eps2 = s2
            else:
                eps2 = eps * eps
                last2 = omega + alpha * eps2 + beta * s2
            prev_eps2, prev_sigma2 = eps2, s2
        return math.sqrt(last2) / scale if last2 == last2 else math.nan

    def forecast(self, returns: pd.Series) -> pd.Series:
        """One-step-ahead vol forecast per row of ``returns`` (index kept), named ``garch_vol``."""
        _, ahead = self.filter(returns)
        index = returns.index if isinstance(returns, pd.Series) else None
        return pd.Series(ahead, index=index, name="garch_vol")


class RegimeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n_regimes: int = Field(default=3, ge=2, le=8)
    #: bars of the rolling realized-volatility window of :func:`regime_features`.
    vol_window: int = Field(default=48, ge=2)
    #: bars of the trend (log-price change) window of :func:`regime_features`.
    trend_window: int = Field(default=48, ge=1)
    covariance_type: Literal["full", "diag", "tied", "spherical"] = "full"
    n_init: int = Field(default=2, ge=1)
    max_iter: int = Field(default=200, ge=10)
    seed: int = 0
    #: BLAS/OpenMP threads while fitting: one is fastest for this size on a shared machine
    #: (k-means initialisation oversubscribes cores otherwise).
    n_threads: int = Field(default=1, ge=1)


def regime_features(close: pd.Series, vol_window: int = 48, trend_window: int = 48) -> pd.DataFrame:
    """Causal regime inputs of ONE series (rows in time order), NaN until the windows fill.

    ``log_vol``: log of the rolling std of log returns over ``vol_window`` bars.
    ``trend``: log-price change over ``trend_window`` bars divided by ``vol * sqrt(window)``
    (a scale-free trend strength, like a t-statistic of the drift).
    """
    if (close <= 0).any():
        raise ValueError("close prices must be positive to compute log returns")
    log_close = np.log(close.astype(float))
    ret = log_close.diff()
    vol = ret.rolling(vol_window, min_periods=vol_window).std()
    trend = (log_close - log_close.shift(trend_window)) / (vol * np.sqrt(trend_window))
    with np.errstate(divide="ignore"):
        log_vol = np.log(vol.where(vol > 0))
    return pd.DataFrame({"log_vol": log_vol, "trend": trend}, index=close.index)


class GaussianRegimes:
    """Gaussian mixture regimes, labelled by volatility: regime 0 is the calmest."""

    name = "gmm_regime"
    family = "regime"

    def __init__(self, config: RegimeConfig | None = None, vol_column: str = "log_vol") -> None:
        self.config = config or RegimeConfig()
        self.vol_column = vol_column
        self.columns_: list[str] | None = None
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.mixture_: GaussianMixture | None = None
        self.order_: np.ndarray | None = None

    def fit(self, features: pd.DataFrame) -> Self:
        """Fit on training rows; rows with any missing value are ignored."""
        if self.vol_column not in features.columns:
            raise ValueError(
                f"regime features need the volatility column {self.vol_column!r}; "
                f"got {list(features.columns)}"
            )
        clean = features.dropna()
        if len(clean) < 10 * self.config.n_regimes:
            raise ValueError(
                f"{len(clean)} complete rows are too few to fit {self.config.n_regimes} regimes"
            )
        values = clean.to_numpy(dtype=float)
        self.columns_ = list(features.columns)
        self.center_ = values.mean(axis=0)
        self.scale_ = np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
        mixture = GaussianMixture(
            n_components=self.config.n_regimes,
            covariance_type=self.config.covariance_type,
            n_init=self.config.n_init,
            max_iter=self.config.max_iter,
            random_state=self.config.seed,
        )
        with threadpool_limits(limits=self.config.n_threads):
            mixture.fit((values - self.center_) / self.scale_)
        self.mixture_ = mixture
        vol_means = mixture.means_[:, self.columns_.index(self.vol_column)]
        self.order_ = np.argsort(vol_means, kind="stable")  # order_[k] = component of regime k
        return self

    def _scaled(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.mixture_ is None or self.columns_ is None:
            raise NotFittedError("regime model must be fitted before predicting")
        missing = [c for c in self.columns_ if c not in features.columns]
        if missing:
            raise ValueError(f"regime features lack columns {missing} seen at fit time")
        values = features[self.columns_].to_numpy(dtype=float)
        complete = ~np.isnan(values).any(axis=1)
        return (values - self.center_) / self.scale_, complete

    def predict_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """P(regime k) per row as columns ``regime_0 .. regime_{K-1}``; NaN for incomplete rows."""
        scaled, complete = self._scaled(features)
        assert self.mixture_ is not None and self.order_ is not None
        out = np.full((len(features), self.config.n_regimes), np.nan)
        if complete.any():
            out[complete] = self.mixture_.predict_proba(scaled[complete])[:, self.order_]
        columns = [f"regime_{k}" for k in range(self.config.n_regimes)]
        return pd.DataFrame(out, index=features.index, columns=columns)

    def predict_proba_values(self, values: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` on a float array ``(n, len(columns_))`` (columns in
        ``columns_`` order), as an array: the same scaling and mixture posterior (sklearn's
        ``predict_proba`` minus its per-call input validation), for the serving path."""
        if self.mixture_ is None or self.columns_ is None:
            raise NotFittedError("regime model must be fitted before predicting")
        assert self.order_ is not None
        values = np.asarray(values, dtype=float)
        complete = ~np.isnan(values).any(axis=1)
        scaled = (values - self.center_) / self.scale_
        out = np.full((len(values), self.config.n_regimes), np.nan)
        if complete.any():
            rows = np.ascontiguousarray(scaled[complete])
            estimate = getattr(self.mixture_, "_estimate_log_prob_resp", None)
            if estimate is None:  # pragma: no cover - another sklearn generation
                out[complete] = self.mixture_.predict_proba(rows)[:, self.order_]
            else:
                _, log_resp = estimate(rows)
                out[complete] = np.exp(log_resp)[:, self.order_]
        return out

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """The most likely regime per row (nullable integer; missing for incomplete rows)."""
        proba = self.predict_proba(features)
        label = pd.Series(pd.NA, index=features.index, dtype="Int64", name="regime")
        complete = proba.notna().all(axis=1).to_numpy()
        label[complete] = np.argmax(proba.to_numpy()[complete], axis=1)
        return label

    def summary(self) -> pd.DataFrame:
        """Per regime: mixture weight and mean of each feature in original units."""
        if self.mixture_ is None or self.order_ is None or self.columns_ is None:
            raise NotFittedError("regime model must be fitted before summarising")
        means = self.mixture_.means_[self.order_] * self.scale_ + self.center_
        frame = pd.DataFrame(means, columns=self.columns_)
        frame.insert(0, "weight", self.mixture_.weights_[self.order_])
        frame.index.name = "regime"
        return frame
