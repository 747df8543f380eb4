"""The deployable ensemble: feature rows in; per horizon a calibrated P(up) and an expected
return out, with every part inside.

An :class:`Ensemble` bundles what the walk-forward pipeline produced for serving, one
:class:`HorizonEnsemble` per label horizon (``models.horizons``), each with:

* the base direction models of the latest fold for that horizon
  (``models/zoo/<name>/final/h<h>``);
* per series, the latest fold's GARCH(1,1) and regime mixture (``models/zoo/regime``, shared);
* the stacked, calibrated meta-learner fitted on all out-of-fold predictions of the horizon,
  and the expected-return scale ``beta_h`` (:func:`candlecast.models.stacking.
  fit_return_scale`): ``exp_ret_h = beta_h x vol x sqrt(h) x Phi^-1(prob_up_h)`` with ``vol``
  the GARCH forecast of one bar's return std.

The answer holds ``prob_up_<h>`` and ``exp_ret_<h>`` for every horizon asked (all by
default), ``volatility``, and the primary horizon's (``train.label``'s) ``prob_up``,
``confidence``, ``disagreement``, ``prob_mean``, ``prob_<model>`` and extras unsuffixed. The
bundle also carries the decision policy chosen with it (``manifest["policy"]``) and the cost
model it was chosen under (``manifest["costs"]``).

For one horizon, ``predict(frame)`` takes recent feature rows (``series_id``,
``event_timestamp`` and the feature columns; several series allowed, any order) and answers
for the LAST row of each series (``rows="last"``, the serving case) or for every row
(``rows="all"``). Sequence models read the rows before a target row, so a caller passes
``window_rows`` rows per series. GARCH volatility is filtered over the rows given, starting
from the training backcast: with ``window_rows`` rows the start value's weight has decayed by
``beta ** window_rows``.

``rows="last"`` runs the array path (:meth:`Ensemble.predict_last`, also what the service
calls): per series, numpy arrays end to end, each base model on just the context it reads
(Chronos one context, the transformer one window, LightGBM and the baselines one row, GARCH
and the regimes the last row). It gives the same numbers as the frame path
(``_predict_frame``, still used for ``rows="all"``), tested on real data; the only difference
is float32 rounding of the transformer's batch of one (relative ~1e-7).

Extra inputs are filled as in training: missing GARCH vol carries the last value of the series
(else the training median), missing regime probabilities become uniform, a missing Chronos
spread becomes its training median.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from candlecast.models.base import DirectionModel
from candlecast.models.base_predictions import _ffill, base_prediction, chronos_rows, regime_inputs

__all__ = ["Ensemble", "HorizonEnsemble", "base_prediction", "chronos_rows", "regime_inputs"]

_MANIFEST = "horizon_ensemble.json"
_BUNDLE = "ensemble.json"


class HorizonEnsemble:
    """One horizon's stack: base models + per-series GARCH/regimes + the stacked meta-learner
    (see the module docstring); :class:`Ensemble` holds one per horizon."""

    def __init__(
        self,
        base: dict[str, DirectionModel],
        stacker: Any,
        regimes: dict[str, dict[str, Any]],
        manifest: dict[str, Any],
    ) -> None:
        missing = [m for m in stacker.models if m not in base]
        if missing:
            raise ValueError(f"the stacker needs base models {missing} that are not bundled")
        self.base, self.stacker, self.regimes, self.manifest = base, stacker, regimes, manifest

    @property
    def series_column(self) -> str:
        return str(self.manifest["series_column"])

    @property
    def time_column(self) -> str:
        return str(self.manifest["time_column"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.manifest["feature_columns"])

    @property
    def window_rows(self) -> int:
        return int(self.manifest["window_rows"])

    @property
    def input_columns(self) -> list[str]:
        return [self.series_column, self.time_column, *self.feature_columns]

    # ---------------------------------------------------------------- predict

    def predict(self, frame: pd.DataFrame, rows: str = "last") -> pd.DataFrame:
        """Answers for the last row of each series (``rows="last"``, the array path) or for
        every row (``"all"``); see the module docstring for the columns."""
        if rows not in ("last", "all"):
            raise ValueError(f"rows must be 'last' or 'all', got {rows!r}")
        if rows == "all":
            return self._predict_frame(frame, rows)
        data, codes, uniques = self._checked_input(frame)
        s, t = self.series_column, self.time_column
        ns = pd.DatetimeIndex(data[t]).as_unit("ns").asi8
        values = data[self.feature_columns].to_numpy(dtype=np.float64)
        answers, last_rows = [], []
        for code in range(len(uniques)):
            mine = np.flatnonzero(codes == code)
            mine = mine[np.argsort(ns[mine], kind="stable")]
            answers.append(self.predict_last(str(uniques[code]), ns[mine], values[mine]))
            last_rows.append(mine[-1])
        at = np.asarray(last_rows)
        columns: dict[str, Any] = {
            s: data[s].to_numpy()[at],
            t: data[t].iloc[at].to_numpy(),
            **{k: np.array([a[k] for a in answers]) for k in answers[0]},
        }
        return self._result_frame(columns)

    def _checked_input(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, Any]:
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise ValueError(f"ensemble input lacks columns {missing[:8]}")
        if len(frame) == 0:
            raise ValueError("ensemble input has no rows")
        s, t = self.series_column, self.time_column
        data = frame[self.input_columns].copy()
        data[t] = pd.to_datetime(data[t], utc=True)
        codes, uniques = pd.factorize(data[s], sort=True)
        unknown = sorted(set(uniques) - set(self.regimes))
        if unknown:
            raise ValueError(f"series {unknown} are unknown to this ensemble; "
                             f"it was trained on {sorted(self.regimes)}")
        return data, codes, uniques

    def _result_frame(self, columns: dict[str, Any]) -> pd.DataFrame:
        t = self.time_column
        result = pd.DataFrame(columns)
        result[t] = pd.DatetimeIndex(result[t]).tz_localize("UTC") if result[t].dt.tz is None \
            else result[t]
        return result

    def _predict_frame(self, frame: pd.DataFrame, rows: str = "last") -> pd.DataFrame:
        """The frame path: one DataFrame per base model (``rows="all"``; for ``"last"`` kept
        as the reference the array path is tested against)."""
        data, codes, uniques = self._checked_input(frame)
        s, t = self.series_column, self.time_column
        order = np.lexsort((pd.DatetimeIndex(data[t]).asi8, codes))
        if (np.diff(order) != 1).any():  # sort by series, then time (skipped if already so)
            data, codes = data.iloc[order].reset_index(drop=True), codes[order]
        # position counted from each series' last row (0 = the latest candle)
        ends = np.searchsorted(codes, codes, side="right")
        position = ends - 1 - np.arange(len(codes))
        starts = np.flatnonzero(np.r_[True, np.diff(codes) != 0])
        runs = [(str(uniques[codes[a]]), slice(int(a), int(ends[a]))) for a in starts]
        targets = np.flatnonzero(position == 0) if rows == "last" else np.arange(len(data))
        probs, spread = self._base_probabilities(data, targets, position, rows == "last")
        extra = self._extras(data, targets, spread, runs)
        out = self.stacker.predict(probs, extra)
        columns: dict[str, Any] = {
            s: data[s].to_numpy()[targets],
            t: data[t].iloc[targets].to_numpy(),
            **{c: out[c].to_numpy() for c in out.columns},
            **{f"prob_{m}": probs[m].to_numpy() for m in probs.columns},
        }
        if extra is not None:
            columns.update({c: extra[c].to_numpy() for c in extra.columns})
        return self._result_frame(columns)

    # ---------------------------------------------------------------- the array path

    def predict_last(self, series: str, ns: np.ndarray, values: np.ndarray) -> dict[str, float]:
        """The answer for the LAST row of ONE series from arrays (the serving path).

        ``ns``: the rows' event times as int64 nanoseconds (UTC), ascending; ``values``:
        ``(len(ns), len(feature_columns))`` floats in :attr:`feature_columns` order, the same
        rows a frame would hold (``window_rows`` of them for the sequence models' context and
        the GARCH filter). Returns ``prob_up``, ``confidence``, ``disagreement``,
        ``prob_mean``, ``prob_<model>`` and the extras: the columns of :meth:`predict`.
        """
        if series not in self.regimes:
            raise ValueError(f"series {[series]} are unknown to this ensemble; "
                             f"it was trained on {sorted(self.regimes)}")
        ns = np.asarray(ns, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        n = len(ns)
        if n == 0:
            raise ValueError("ensemble input has no rows")
        if values.shape != (n, len(self.manifest["feature_columns"])):
            raise ValueError(f"feature values must have shape ({n}, "
                             f"{len(self.manifest['feature_columns'])}), got {values.shape}")
        if n > 1 and (np.diff(ns) < 0).any():
            raise ValueError("rows must be in time order (ascending event times)")
        probs, spread = [], np.nan
        for name in self.stacker.models:
            context = int(self.manifest["context_bars"].get(name, 0))
            start = max(0, n - 1 - context)  # the rows a last-row window can reach
            p, model_spread = self._last_probability(self.base[name], ns[start:],
                                                     values[start:])
            probs.append(p)
            if name == "chronos" and model_spread is not None:
                spread = model_spread
        extras = self._last_extras(series, values, spread)
        order = self.stacker.extras if extras else []
        missing = [c for c in order if c not in extras]
        if missing:
            raise ValueError(f"the ensemble was fitted with extra inputs {order}")
        out = self.stacker.predict_values(
            np.array([probs]), np.array([[extras[c] for c in order]]) if order else None
        )
        answer = {k: float(v[0]) for k, v in out.items()}
        answer.update({f"prob_{m}": p for m, p in zip(self.stacker.models, probs, strict=True)})
        answer.update(extras)
        return answer

    def _column_index(self) -> dict[str, int]:
        index = self.__dict__.get("_columns")
        if index is None:
            index = self.__dict__["_columns"] = {c: i for i, c in enumerate(self.feature_columns)}
        return index

    def _last_probability(
        self, model: Any, ns: np.ndarray, values: np.ndarray
    ) -> tuple[float, float | None]:
        """P(up) of ``model`` for the last of these rows (and Chronos' spread)."""
        from candlecast.models.baselines import (
            SIGN_STATES,
            BaseRateModel,
            MomentumModel,
            PersistenceModel,
        )
        from candlecast.models.chronos_model import ChronosDirectionModel
        from candlecast.models.lightgbm_model import LightGBMDirectionModel
        from candlecast.models.quantiles import interpolate_quantiles, prob_up_from_quantiles
        from candlecast.models.transformer import TransformerDirectionModel

        index = self._column_index()
        kind = type(model)
        if kind is ChronosDirectionModel:
            cfg = model.config
            context = model.latest_context(values[:, index[cfg.return_column]], ns)
            if (~np.isnan(context)).sum() < cfg.min_past:
                return 0.5, np.nan
            levels, quantiles = model.quantiles_of(context)
            lo_hi = interpolate_quantiles(levels, quantiles, cfg.spread_levels)
            return (float(prob_up_from_quantiles(levels, quantiles)[0]),
                    float(lo_hi[0, 1] - lo_hi[0, 0]))
        if kind is TransformerDirectionModel:
            return model.predict_last(values, self.feature_columns, ns), None
        if kind is LightGBMDirectionModel and model.booster_ is not None:
            picks = [index[c] for c in model.features_]
            row = values[-1:, picks]
            return float(model.booster_.predict(row, num_iteration=model.num_iteration_,
                                                num_threads=1)[0]), None
        if kind in (PersistenceModel, MomentumModel) and model.p_up_ is not None:
            fast, slow = getattr(model, "fast", None), getattr(model, "slow", None)
            if fast is not None and slow is not None:
                raw = values[-1:, index[fast]] - values[-1:, index[slow]]
            else:
                raw = values[-1:, index[model.feature]]
            state = np.sign(np.nan_to_num(raw, nan=0.0)).astype(int)
            lookup = np.array([model.p_up_[s] for s in SIGN_STATES])
            return float(lookup[state + 1][0]), None
        if kind is BaseRateModel and model.p_up_ is not None:
            return float(model.p_up_), None
        # any other model: its own frame API on these rows (the frame path, for this model)
        frame = pd.DataFrame(values, columns=self.feature_columns)
        frame.insert(0, self.time_column, pd.to_datetime(ns, utc=True))
        frame.insert(0, self.series_column, "series")
        prob, extras = base_prediction(model, frame)
        spread = extras.get("spread")
        return float(prob[-1]), (float(spread[-1]) if spread is not None else None)

    def _last_extras(self, series: str, values: np.ndarray, spread: float) -> dict[str, float]:
        """The extra inputs of the last row, filled as in training (see ``_extras``)."""
        wanted = list(self.manifest["extras"])
        if not wanted:
            return {}
        index = self._column_index()
        fill = self.manifest["fill"]
        n_regimes = int(self.manifest["n_regimes"])
        vol_w, trend_w = int(self.manifest["vol_window"]), int(self.manifest["trend_window"])
        fitted = self.regimes[series]
        out: dict[str, float] = {}
        probs: np.ndarray | None = None
        for name in wanted:
            if name == "garch_vol":
                vol = fitted["garch"].last_forecast(values[:, index["logret_1"]])
                out[name] = fill["garch_vol"] if np.isnan(vol) else vol
            elif name.startswith("regime_"):
                if probs is None:
                    rv = values[-1:, index[f"rv_{vol_w}"]]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        positive = np.where(rv > 0, rv, np.nan)
                        inputs = {
                            "log_vol": np.log(positive),
                            "trend": values[-1:, index[f"logret_{trend_w}"]]
                            / (positive * np.sqrt(trend_w)),
                        }
                    regimes = fitted["regimes"]
                    probs = regimes.predict_proba_values(
                        np.column_stack([inputs[c] for c in regimes.columns_]))[0]
                value = float(probs[int(name.removeprefix("regime_"))])
                out[name] = 1.0 / n_regimes if np.isnan(value) else value
            elif name == "chronos_spread":
                out[name] = fill["chronos_spread"] if np.isnan(spread) else spread
            else:
                raise ValueError(f"unknown ensemble extra input {name!r}")
        return out

    def _base_probabilities(
        self, data: pd.DataFrame, targets: np.ndarray, position: np.ndarray, last_only: bool
    ) -> tuple[pd.DataFrame, np.ndarray | None]:
        columns, spread = {}, None
        frames: dict[int, pd.DataFrame] = {}
        for name in self.stacker.models:
            model = self.base[name]
            context = int(self.manifest["context_bars"].get(name, 0))
            if context == 0:
                rows = targets
            else:  # only the rows a target row's window can reach
                rows = np.flatnonzero(position <= position[targets].max() + context)
            if context not in frames:
                frames[context] = data.iloc[rows].reset_index(drop=True)
            X = frames[context]
            at = np.searchsorted(rows, targets)
            if last_only and callable(getattr(model, "contexts", None)):
                columns[name], chronos_spread = chronos_rows(model, X, at)
                spread = chronos_spread if name == "chronos" else spread
                continue
            prob, extras = base_prediction(model, X)
            columns[name] = prob[at]
            if "spread" in extras and name == "chronos":
                spread = extras["spread"][at]
        return pd.DataFrame(columns), spread

    def _extras(
        self,
        data: pd.DataFrame,
        targets: np.ndarray,
        spread: np.ndarray | None,
        runs: list[tuple[str, slice]],
    ) -> pd.DataFrame | None:
        wanted = list(self.manifest["extras"])
        if not wanted:
            return None
        fill = self.manifest["fill"]
        n_regimes = int(self.manifest["n_regimes"])
        vol_w, trend_w = int(self.manifest["vol_window"]), int(self.manifest["trend_window"])
        garch_vol = np.full(len(data), np.nan)
        regime_probs = np.full((len(data), n_regimes), np.nan)
        is_target = np.zeros(len(data), dtype=bool)
        is_target[targets] = True
        returns = data["logret_1"].to_numpy(dtype=float)
        rv = data[f"rv_{vol_w}"].to_numpy(dtype=float)
        trend_ret = data[f"logret_{trend_w}"].to_numpy(dtype=float)
        for series, rows in runs:
            fitted = self.regimes[series]
            _, vol = fitted["garch"].filter(returns[rows])  # the filter runs over the window
            garch_vol[rows] = _ffill(vol)
            mine = np.flatnonzero(is_target[rows]) + rows.start
            with np.errstate(divide="ignore", invalid="ignore"):
                positive = np.where(rv[mine] > 0, rv[mine], np.nan)
                inputs = pd.DataFrame({
                    "log_vol": np.log(positive),
                    "trend": trend_ret[mine] / (positive * np.sqrt(trend_w)),
                })
            regime_probs[mine] = fitted["regimes"].predict_proba(inputs).to_numpy()
        parts: dict[str, np.ndarray] = {}
        for name in wanted:
            if name == "garch_vol":
                values = garch_vol[targets]
                parts[name] = np.where(np.isnan(values), fill["garch_vol"], values)
            elif name.startswith("regime_"):
                values = regime_probs[targets, int(name.removeprefix("regime_"))]
                parts[name] = np.where(np.isnan(values), 1.0 / n_regimes, values)
            elif name == "chronos_spread":
                values = spread if spread is not None else np.full(len(targets), np.nan)
                parts[name] = np.where(np.isnan(values), fill["chronos_spread"], values)
            else:
                raise ValueError(f"unknown ensemble extra input {name!r}")
        return pd.DataFrame(parts)

    def accelerate(self) -> list[str]:
        """Prepare the base models for one-row calls (the serving path): each model with an
        ``accelerate()`` (Chronos: its network traced for one context and checked against
        eager mode) is asked; the names of those that accepted. Answers do not change."""
        done = []
        for name in self.stacker.models:
            prepare = getattr(self.base[name], "accelerate", None)
            if prepare is not None and prepare():
                done.append(name)
        return done

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        from candlecast.models.registry import save_model

        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        for name, model in self.base.items():
            save_model(model, target / "base" / name)
        joblib.dump(self.stacker, target / "stacker.joblib")
        joblib.dump(self.regimes, target / "regimes.joblib")
        (target / _MANIFEST).write_text(json.dumps(self.manifest, indent=2, default=str))
        return target

    @classmethod
    def load(cls, directory: str | Path) -> HorizonEnsemble:
        from candlecast.models.registry import load_model

        source = Path(directory)
        manifest = json.loads((source / _MANIFEST).read_text())
        stacker = joblib.load(source / "stacker.joblib")
        base = {name: load_model(source / "base" / name) for name in stacker.models}
        return cls(base, stacker, joblib.load(source / "regimes.joblib"), manifest)


class Ensemble:
    """The one deployable ensemble: a :class:`HorizonEnsemble` per horizon (see the module
    docstring). ``manifest`` holds ``horizons``, ``primary_horizon``, ``return_scale`` (per
    horizon), ``vol_fill`` (the training median of the GARCH forecast), and the bundled
    ``policy``/``costs`` (plain dicts, validated by their users)."""

    def __init__(self, members: dict[int, HorizonEnsemble], manifest: dict[str, Any]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one horizon")
        primary = int(manifest["primary_horizon"])
        if primary not in members:
            raise ValueError(f"primary horizon {primary} has no stack; horizons {sorted(members)}")
        scales = {int(h): float(v) for h, v in manifest["return_scale"].items()}
        missing = [h for h in members if h not in scales]
        if missing:
            raise ValueError(f"no expected-return scale for horizons {missing}")
        self.members = dict(sorted(members.items()))
        self.manifest = manifest
        self.primary = members[primary]
        self._scales = scales

    # the primary stack's layout is every stack's layout (same features, series, regimes)
    @property
    def horizons(self) -> list[int]:
        return list(self.members)

    @property
    def primary_horizon(self) -> int:
        return int(self.manifest["primary_horizon"])

    @property
    def series_column(self) -> str:
        return self.primary.series_column

    @property
    def time_column(self) -> str:
        return self.primary.time_column

    @property
    def feature_columns(self) -> list[str]:
        return self.primary.feature_columns

    @property
    def input_columns(self) -> list[str]:
        return self.primary.input_columns

    @property
    def window_rows(self) -> int:
        return max(m.window_rows for m in self.members.values())

    @property
    def regimes(self) -> dict[str, dict[str, Any]]:
        return self.primary.regimes

    @property
    def policy(self) -> dict[str, Any] | None:
        """The decision policy bundled with the model (a ``PolicyConfig`` as a dict)."""
        return self.manifest.get("policy")

    @property
    def costs(self) -> dict[str, Any] | None:
        """The cost model the policy was chosen under (a ``CostConfig`` as a dict)."""
        return self.manifest.get("costs")

    def return_scale(self, horizon: int) -> float:
        return self._scales[int(horizon)]

    def _horizons(self, horizons: list[int] | tuple[int, ...] | None) -> list[int]:
        if horizons is None:
            return self.horizons
        wanted = [int(h) for h in horizons]
        unknown = [h for h in wanted if h not in self.members]
        if unknown:
            raise ValueError(f"horizons {unknown} are not in this ensemble {self.horizons}")
        return wanted

    # ---------------------------------------------------------------- predict

    def predict(self, frame: pd.DataFrame, rows: str = "last",
                horizons: list[int] | tuple[int, ...] | None = None) -> pd.DataFrame:
        """The primary horizon's columns plus ``prob_up_<h>``, ``exp_ret_<h>`` per horizon and
        ``volatility``, for the last row of each series (``rows="last"``) or every row."""
        from candlecast.models.stacking import expected_return

        wanted = self._horizons(horizons)
        s, t = self.series_column, self.time_column
        out = self.primary.predict(frame, rows=rows)
        keys = pd.MultiIndex.from_frame(out[[s, t]])
        vol = self._frame_volatility(frame, out)
        out["volatility"] = vol
        for h in wanted:
            if h == self.primary_horizon:
                prob = out["prob_up"].to_numpy(dtype=float)
            else:
                other = self.members[h].predict(frame, rows=rows)
                prob = (other.set_index([s, t])["prob_up"].reindex(keys)
                        .to_numpy(dtype=float))
            out[f"prob_up_{h}"] = prob
            out[f"exp_ret_{h}"] = expected_return(prob, vol, h, self._scales[h])
        return out

    def _frame_volatility(self, frame: pd.DataFrame, answers: pd.DataFrame) -> np.ndarray:
        """The GARCH one-bar vol forecast at each answered row (filtered over the rows given,
        as the stacks' ``garch_vol`` extra; NaN filled with the training median)."""
        s, t = self.series_column, self.time_column
        data = frame[[s, t, "logret_1"]].copy()
        data[t] = pd.to_datetime(data[t], utc=True)
        data = data.sort_values([s, t], kind="stable")
        parts = []
        for series, rows in data.groupby(s, sort=False):
            _, vol = self.regimes[str(series)]["garch"].filter(
                rows["logret_1"].to_numpy(dtype=float))
            parts.append(pd.Series(_ffill(vol), index=pd.MultiIndex.from_frame(rows[[s, t]])))
        keyed = pd.concat(parts)
        answer_keys = answers[[s, t]].copy()
        answer_keys[t] = pd.to_datetime(answer_keys[t], utc=True)
        values = keyed.reindex(pd.MultiIndex.from_frame(answer_keys)).to_numpy(dtype=float)
        return np.where(np.isnan(values), float(self.manifest["vol_fill"]), values)

    def predict_last(self, series: str, ns: np.ndarray, values: np.ndarray,
                     horizons: list[int] | tuple[int, ...] | None = None) -> dict[str, float]:
        """The answer for the LAST row of ONE series from arrays (the serving path; see
        :meth:`HorizonEnsemble.predict_last` for the inputs). ``horizons`` limits the work to
        the stacks asked for (the service asks for the policy's horizon only); the primary
        horizon's unsuffixed fields are always there."""
        from candlecast.models.stacking import expected_return

        wanted = self._horizons(horizons)
        answer = self.primary.predict_last(series, ns, values)
        index = self.primary._column_index()
        vol = self.regimes[series]["garch"].last_forecast(
            np.asarray(values, dtype=np.float64)[:, index["logret_1"]])
        vol = float(self.manifest["vol_fill"]) if np.isnan(vol) else float(vol)
        answer["volatility"] = vol
        for h in wanted:
            prob = answer["prob_up"] if h == self.primary_horizon else \
                self.members[h].predict_last(series, ns, values)["prob_up"]
            answer[f"prob_up_{h}"] = prob
            answer[f"exp_ret_{h}"] = float(expected_return(np.array([prob]), np.array([vol]),
                                                           h, self._scales[h])[0])
        return answer

    def accelerate(self) -> list[str]:
        """:meth:`HorizonEnsemble.accelerate` for every stack; ``<model>@h<h>`` names."""
        return [f"{name}@h{h}" for h, m in self.members.items() for name in m.accelerate()]

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        for h, member in self.members.items():
            member.save(target / f"h{h}")
        (target / _BUNDLE).write_text(json.dumps(self.manifest, indent=2, default=str))
        return target

    @classmethod
    def load(cls, directory: str | Path) -> Ensemble:
        source = Path(directory)
        manifest = json.loads((source / _BUNDLE).read_text())
        members = {int(h): HorizonEnsemble.load(source / f"h{h}") for h in manifest["horizons"]}
        return cls(members, manifest)
