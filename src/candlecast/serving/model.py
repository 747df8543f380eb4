"""The "signal model" seen by the service, and the MLflow adapter that provides it.

The service depends only on :class:`SignalModel`: given the recent feature rows of ONE series
(a DataFrame with ``series_id``, ``event_timestamp`` and feature columns, oldest first, the
last row being the candle to predict) return a :class:`ModelOutput`. ``window_rows`` says how
many rows it wants (1 for a row model such as LightGBM).

:func:`load_signal_model` resolves the configured MLflow URI (``models:/NAME@ALIAS`` first,
then each fallback, e.g. ``models:/candlecast-lightgbm/latest``), pins the resolved version,
loads it as an MLflow pyfunc and wraps it in :class:`PyfuncSignalModel`:

* a LightGBM / scikit-learn flavour: ``predict_proba`` of the raw model on the last row
  (MLflow's pyfunc ``predict`` of a classifier returns labels, not probabilities);
* the stacked ensemble (a pyfunc wrapping :class:`~candlecast.models.ensemble.Ensemble`):
  its unwrapped python model is called directly (``Ensemble.predict_last`` on the window's
  arrays, :meth:`PyfuncSignalModel.predict_window` straight from the service's window cache),
  the window checked by this adapter (columns, one series, numeric values) instead of
  MLflow's per-call schema enforcement; same answer as ``pyfunc.predict`` (tested), and the
  version / lineage still come from the MLflow resolution. Answers are memoized per input
  (an exact digest of the window's times and values, see :class:`AnswerCache`). With
  ``accelerate`` the base models are prepared for one-row calls (``Ensemble.accelerate``:
  Chronos-2's network traced for one context, checked against eager mode);
* any other pyfunc: ``predict`` on the window; the output may be a
  DataFrame with ``prob_up`` and optional ``confidence``, ``disagreement``, ``q0.1``... columns
  (last row used), or an array/Series of P(up).

A model whose signature lists ``series_id``/``event_timestamp`` gets those columns too
(``event_timestamp`` as tz-naive UTC: MLflow's schema enforcement refuses tz-aware datetimes);
its window comes from the model metadata (``{"candlecast": {"window_rows": 128}}`` or
``{"window_rows": 128}``) or the config.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from candlecast.common.time import naive_utc
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY

_QUANTILE = re.compile(r"^q(0(\.\d+)?|1(\.0+)?|\.\d+)$")
_ROW_FLAVORS = ("lightgbm", "sklearn", "xgboost")
#: written next to a bundled model folder by the package stage
BUNDLE_INFO = "candlecast_model.json"


class ModelError(RuntimeError):
    """The model could not be resolved/loaded, or returned something unusable."""


@dataclass(frozen=True)
class ModelOutput:
    prob_up: float
    quantiles: dict[str, float] | None = None
    confidence: float | None = None
    disagreement: float | None = None
    #: per horizon (bars): ``(prob_up, expected log return)`` -- what the policy reads
    forecasts: dict[int, tuple[float, float]] | None = None
    #: the forecast standard deviation of one bar's log return
    volatility: float | None = None


def _horizon_forecasts(values: Any, horizons: Sequence[int] | None = None
                       ) -> dict[int, tuple[float, float]] | None:
    """``prob_up_<h>``/``exp_ret_<h>`` pairs of a model answer (a mapping or a row)."""
    keys = values.keys() if hasattr(values, "keys") else values.index
    found = sorted(int(str(k).removeprefix("prob_up_")) for k in keys
                   if str(k).startswith("prob_up_") and str(k).removeprefix("prob_up_").isdigit())
    out = {}
    for h in found:
        if horizons is not None and h not in horizons:
            continue
        er = values[f"exp_ret_{h}"] if f"exp_ret_{h}" in keys else float("nan")
        out[h] = (_probability(values[f"prob_up_{h}"]), _finite(er, f"exp_ret_{h}"))
    return out or None


@dataclass(frozen=True)
class ModelInfo:
    """Where the served model came from (``/metadata``)."""

    requested_uri: str
    resolved_uri: str
    name: str | None
    version: str | None
    source: str  # primary | fallback | local
    fallback_reason: str | None
    run_id: str | None
    flavor: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        if self.name and self.version:
            return f"{self.name}/{self.version}"
        return self.version or self.resolved_uri

    def lineage(self, key: str) -> str | None:
        return self.tags.get(f"lineage.{key}")


class SignalModel(Protocol):
    info: ModelInfo
    feature_columns: tuple[str, ...]  # model features (no series_id / event_timestamp)
    window_rows: int

    def predict(self, rows: pd.DataFrame) -> ModelOutput: ...


def parse_output(raw: Any) -> ModelOutput:
    """Read P(up) (+ optional fields) from the LAST row of a model's output."""
    if isinstance(raw, dict):
        raw = pd.DataFrame({k: np.atleast_1d(v) for k, v in raw.items()})
    if isinstance(raw, pd.DataFrame):
        if len(raw) == 0:
            raise ModelError("model returned no rows")
        last = raw.iloc[-1]
        if "prob_up" in raw.columns:
            prob = last["prob_up"]
        elif raw.shape[1] == 1:
            prob = last.iloc[0]
        else:
            raise ModelError(f"model output has no 'prob_up' column: {list(raw.columns)[:8]}")
        quantiles = {
            str(c): _finite(last[c], str(c)) for c in raw.columns if _QUANTILE.match(str(c))
        }
        return ModelOutput(
            prob_up=_probability(prob),
            quantiles=quantiles or None,
            confidence=_optional(last, "confidence"),
            disagreement=_optional(last, "disagreement"),
            forecasts=_horizon_forecasts(last),
            volatility=_optional(last, "volatility"),
        )
    values = np.asarray(raw, dtype=float)
    if values.size == 0:
        raise ModelError("model returned no values")
    if values.ndim == 2 and values.shape[1] == 2:
        return ModelOutput(prob_up=_probability(values[-1, 1]))
    return ModelOutput(prob_up=_probability(values.reshape(-1)[-1]))


def _finite(value: Any, what: str) -> float:
    out = float(value)
    if not math.isfinite(out):
        raise ModelError(f"model returned a non-finite {what}: {out}")
    return out


def _probability(value: Any) -> float:
    p = _finite(value, "prob_up")
    if not 0.0 <= p <= 1.0:
        raise ModelError(f"model returned prob_up {p} outside [0, 1]")
    return p


def _optional_value(value: Any, name: str) -> float | None:
    return None if value is None or value != value else _finite(value, name)


def _optional(row: pd.Series, name: str) -> float | None:
    if name not in row.index or pd.isna(row[name]):
        return None
    return _finite(row[name], name)


class AnswerCache:
    """A small LRU of model answers keyed by the EXACT model input.

    The key is the series id and a BLAKE2b digest of the window's event times and feature
    values (every byte the model reads), so a hit is the answer the model would compute again
    (it is deterministic); a new candle, a rewritten row or a different window is a different
    key. It lives in one :class:`PyfuncSignalModel`: a reloaded model starts empty.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._answers: OrderedDict[tuple[str, bytes], ModelOutput] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(series: str, ns: np.ndarray, values: np.ndarray) -> tuple[str, bytes]:
        digest = hashlib.blake2b(digest_size=20)
        digest.update(np.ascontiguousarray(ns, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        digest.update(str(values.shape).encode())
        return series, digest.digest()

    def get(self, key: tuple[str, bytes], count: bool = True) -> ModelOutput | None:
        """The answer for ``key`` or None; ``count=False``: a second look (e.g. after a miss
        was counted) that does not count as a hit or miss."""
        with self._lock:
            out = self._answers.get(key)
            if out is not None:
                self._answers.move_to_end(key)
            if count:
                if out is None:
                    self.misses += 1
                else:
                    self.hits += 1
            return out

    def put(self, key: tuple[str, bytes], out: ModelOutput) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._answers[key] = out
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)


@dataclass(frozen=True)
class PreparedWindow:
    """An ensemble input of ONE series (times ascending, the ensemble's column order) and its
    :class:`AnswerCache` key."""

    series: str
    ns: np.ndarray
    values: np.ndarray
    key: tuple[str, bytes]


def _zoo_ensemble(pyfunc: Any) -> Any:
    """The :class:`Ensemble` inside a loaded ensemble pyfunc, else None."""
    from candlecast.models.ensemble import Ensemble

    try:
        python_model = pyfunc.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a python_function model (a flavor's own pyfunc)
        return None
    ensemble = getattr(python_model, "ensemble", None)
    return ensemble if isinstance(ensemble, Ensemble) else None


class PyfuncSignalModel:
    """:class:`SignalModel` over a loaded MLflow pyfunc (see the module docstring)."""

    def __init__(self, pyfunc: Any, info: ModelInfo, default_features: Sequence[str],
                 window_rows: int | None = None, answer_cache_size: int = 64,
                 accelerate: bool = False) -> None:
        self.pyfunc = pyfunc
        self.info = info
        meta = pyfunc.metadata
        schema = meta.get_input_schema()
        names = list(schema.input_names()) if schema is not None else list(default_features)
        self.input_columns = tuple(str(n) for n in names)
        self.feature_columns = tuple(
            c for c in self.input_columns if c not in (JOIN_KEY, EVENT_TIMESTAMP)
        )
        self.needs_keys = len(self.feature_columns) < len(self.input_columns)
        declared = _declared_window(meta.metadata or {})
        self.window_rows = int(window_rows or declared or 1)
        if self.needs_keys and self.window_rows == 1 and not (window_rows or declared):
            raise ModelError(
                f"model {info.model_version} reads {JOIN_KEY}/{EVENT_TIMESTAMP} (a window model) "
                "but declares no window_rows in its metadata; set serving.window_rows"
            )
        self._raw: Any = None
        self._booster: Any = None
        if info.flavor in _ROW_FLAVORS:
            raw = pyfunc.get_raw_model()
            if hasattr(raw, "predict_proba"):
                self._raw = raw
            self._booster = _binary_booster(raw)
        self._ensemble: Any = None
        if info.flavor not in _ROW_FLAVORS:
            ensemble = _zoo_ensemble(pyfunc)
            ens_features = set(ensemble.feature_columns) if ensemble is not None else set()
            if ensemble is not None and ens_features <= set(self.input_columns) and \
                    {JOIN_KEY, EVENT_TIMESTAMP} <= set(self.input_columns) and \
                    (ensemble.series_column, ensemble.time_column) == (JOIN_KEY, EVENT_TIMESTAMP):
                self._ensemble = ensemble
        self._ensemble_picks: np.ndarray | None = None
        self.policy, self.costs = _bundled_policy(meta.metadata or {}, self._ensemble)
        #: the horizons the hot path computes: the policy's (every horizon without a policy)
        self.horizons: list[int] | None = ([self.policy.horizon] if self.policy is not None
                                           else None)
        self.answers = AnswerCache(answer_cache_size)
        #: base models prepared for single-row calls (e.g. Chronos-2's traced network)
        self.accelerated: tuple[str, ...] = ()
        if accelerate and self._ensemble is not None:
            self.accelerated = tuple(self._ensemble.accelerate())

    @property
    def direct(self) -> bool:
        """True when the ensemble is called directly (not through ``pyfunc.predict``)."""
        return self._ensemble is not None

    def predict(self, rows: pd.DataFrame) -> ModelOutput:
        if len(rows) == 0:
            raise ModelError("no feature rows to predict from")
        if self._ensemble is not None:
            return self._predict_ensemble(rows.iloc[-self.window_rows:])
        if self._booster is not None or self._raw is not None:
            last = rows[list(self.feature_columns)].to_numpy(dtype=np.float64)[-1:]
            if self._booster is not None:
                # one row, one thread: OpenMP threads only cost time here (and on a loaded
                # machine a lot); same trees and iteration as predict_proba
                p = _probability(self._booster.predict(last, num_threads=1)[0])
            else:
                frame = pd.DataFrame(last, columns=list(self.feature_columns))
                p = _probability(np.asarray(self._raw.predict_proba(frame), dtype=float)[-1, 1])
            return ModelOutput(prob_up=p, confidence=abs(p - 0.5) * 2.0)
        frame = rows.iloc[-self.window_rows:][list(self.input_columns)].reset_index(drop=True)
        if EVENT_TIMESTAMP in frame.columns:
            frame = naive_utc(frame, EVENT_TIMESTAMP)  # MLflow's schema: tz-naive datetimes
        out = parse_output(self.pyfunc.predict(frame))
        if out.confidence is None:
            out = ModelOutput(out.prob_up, out.quantiles, abs(out.prob_up - 0.5) * 2.0,
                              out.disagreement, out.forecasts, out.volatility)
        return out


    def _predict_ensemble(self, frame: pd.DataFrame) -> ModelOutput:
        """The ensemble on the window's arrays; the checks MLflow's schema enforcement made
        (the signature's columns, numbers for the features, a timestamp) made here."""
        ensemble = self._ensemble
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise ModelError(f"model input lacks columns {missing[:8]}")
        keys = frame[JOIN_KEY].to_numpy()
        series = str(keys[-1])
        if len(keys) > 1 and (keys != keys[-1]).any():
            raise ModelError(f"the window mixes series: {sorted(set(map(str, keys)))[:4]}")
        try:
            ns = pd.DatetimeIndex(pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
                                  ).as_unit("ns").asi8
            values = frame[ensemble.feature_columns].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ModelError(f"model input is not numeric / timestamped: {err}") from err
        return self._ensemble_answer(series, ns, values)

    def predict_window(self, series: str, ns: np.ndarray, values: np.ndarray
                       ) -> ModelOutput | None:
        """:meth:`predict` on a window given as arrays (the service's window cache): ``ns``
        int64 event times, ``values`` ``(len(ns), len(feature_columns))`` in
        :attr:`feature_columns` order; the last ``window_rows`` rows are used. The same answer
        as :meth:`predict` on the frame of those rows (tested), without building it. None when
        this model has no array path (call :meth:`predict`)."""
        window = self.prepare_window(series, ns, values)
        return None if window is None else self._answer(window)

    def prepare_window(self, series: str, ns: np.ndarray, values: np.ndarray
                       ) -> PreparedWindow | None:
        """The ensemble's input and its answer-cache key for :meth:`predict_window`'s
        arguments (cheap: column picks and a digest); None when there is no array path. Then
        :meth:`cached_answer` (no model work) or :meth:`answer_window` (the model if needed):
        the service answers cache hits on its event loop and computes misses in a thread."""
        if self._ensemble is None:
            return None
        if len(ns) == 0:
            raise ModelError("no feature rows to predict from")
        picks = self._ensemble_picks
        if picks is None:
            index = {c: i for i, c in enumerate(self.feature_columns)}
            picks = self._ensemble_picks = np.array(
                [index[c] for c in self._ensemble.feature_columns], dtype=np.intp)
        start = max(0, len(ns) - self.window_rows)
        return self._prepared(series, np.asarray(ns[start:], dtype=np.int64),
                              np.asarray(values[start:], dtype=np.float64)[:, picks])

    def cached_answer(self, window: PreparedWindow) -> ModelOutput | None:
        """The memoized answer for ``window``, or None (no model work either way)."""
        return self.answers.get(window.key)

    def answer_window(self, window: PreparedWindow) -> ModelOutput:
        """The answer for ``window``: memoized, else the ensemble (then memoized)."""
        out = self.answers.get(window.key, count=False)
        if out is not None:
            return out
        answer = self._ensemble.predict_last(window.series, window.ns, window.values,
                                             horizons=self.horizons)
        out = ModelOutput(
            prob_up=_probability(answer["prob_up"]),
            confidence=_optional_value(answer.get("confidence"), "confidence"),
            disagreement=_optional_value(answer.get("disagreement"), "disagreement"),
            forecasts=_horizon_forecasts(answer, self.horizons),
            volatility=_optional_value(answer.get("volatility"), "volatility"),
        )
        self.answers.put(window.key, out)
        return out

    def _prepared(self, series: str, ns: np.ndarray, values: np.ndarray) -> PreparedWindow:
        if ns.size > 1 and (np.diff(ns) < 0).any():
            order = np.argsort(ns, kind="stable")
            ns, values = ns[order], values[order]
        return PreparedWindow(series, ns, values, self.answers.key(series, ns, values))

    def _answer(self, window: PreparedWindow) -> ModelOutput:
        """The memoized answer (a counted hit) or the ensemble's (a counted miss)."""
        out = self.cached_answer(window)
        return out if out is not None else self.answer_window(window)

    def _ensemble_answer(self, series: str, ns: np.ndarray, values: np.ndarray) -> ModelOutput:
        return self._answer(self._prepared(series, ns, values))


def _bundled_policy(metadata: dict[str, Any], ensemble: Any) -> tuple[Any, Any]:
    """The decision policy and cost model a model version carries (its MLflow metadata, else
    the ensemble's manifest), validated; ``(None, None)`` for a model without one (it is
    served flat: no policy was chosen with it)."""
    from candlecast.backtest.config import CostConfig
    from candlecast.policy import PolicyConfig

    nested = metadata.get("candlecast") if isinstance(metadata.get("candlecast"), dict) else {}
    policy = nested.get("policy")
    costs = nested.get("costs")
    if policy is None and ensemble is not None:
        policy, costs = ensemble.policy, ensemble.costs
    if policy is None:
        return None, None
    try:
        return PolicyConfig.model_validate(policy), CostConfig.model_validate(costs or {})
    except ValueError as err:
        raise ModelError(f"the model's bundled policy is invalid: {err}") from err


def _binary_booster(raw: Any) -> Any:
    """The Booster of a binary LightGBM classifier (its ``predict`` is P(class 1)), else None."""
    try:
        from lightgbm import Booster, LGBMClassifier
    except ImportError:  # pragma: no cover - lightgbm is a dependency
        return None
    if isinstance(raw, LGBMClassifier) and getattr(raw, "objective_", None) == "binary":
        return raw.booster_
    if isinstance(raw, Booster) and raw.params.get("objective") in ("binary", "cross_entropy"):
        return raw
    return None


def _declared_window(metadata: dict[str, Any]) -> int | None:
    nested = metadata.get("candlecast")
    value = nested.get("window_rows") if isinstance(nested, dict) else None
    value = value if value is not None else metadata.get("window_rows")
    return int(value) if value is not None else None


# ------------------------------------------------------------------- resolution and loading

_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>latest|\d+)$")


@dataclass(frozen=True)
class Resolved:
    load_uri: str
    name: str | None
    version: str | None
    run_id: str | None
    tags: dict[str, str]
    bundle: dict[str, Any] | None = None  # candlecast_model.json of a bundled model


def resolve(uri: str, client: Any) -> Resolved:
    """Pin ``uri`` to one model version (raises :class:`ModelError` if there is none)."""
    from mlflow.exceptions import MlflowException

    try:
        if m := _ALIAS.match(uri):
            mv = client.get_model_version_by_alias(m["name"], m["alias"])
        elif m := _VERSION.match(uri):
            if m["version"] == "latest":
                versions = client.search_model_versions(f"name='{m['name']}'")
                if not versions:
                    raise ModelError(f"registered model {m['name']!r} has no versions")
                mv = max(versions, key=lambda v: int(v.version))
            else:
                mv = client.get_model_version(m["name"], m["version"])
        else:
            return _resolve_local(uri)
    except MlflowException as err:
        raise ModelError(f"{uri}: {str(err).splitlines()[0]}") from err
    tags: dict[str, str] = {}
    if mv.run_id:
        try:
            tags = dict(client.get_run(mv.run_id).data.tags)
        except MlflowException:
            tags = {}
    return Resolved(f"models:/{mv.name}/{mv.version}", mv.name, str(mv.version), mv.run_id, tags)


def _resolve_local(uri: str) -> Resolved:
    """A model folder (e.g. bundled into the bento); lineage from ``candlecast_model.json``."""
    path = Path(uri)
    if "://" not in uri and not (path / "MLmodel").exists():
        raise ModelError(f"{uri}: no MLflow model folder (MLmodel file) there")
    info_file = path / BUNDLE_INFO
    if info_file.exists():
        info = json.loads(info_file.read_text())
        return Resolved(uri, info.get("name"), info.get("version"), info.get("run_id"),
                        dict(info.get("tags", {})), info)
    return Resolved(uri, None, None, None, {})


def load_signal_model(
    model_uri: str,
    fallback_uris: Sequence[str],
    default_features: Sequence[str],
    window_rows: int | None = None,
    client: Any = None,
    accelerate: bool = False,
) -> PyfuncSignalModel:
    """Resolve ``model_uri`` (then each fallback in order) and load it as a pyfunc.

    MLflow's tracking/registry URIs must already be set. The reason the primary URI was
    skipped is kept in ``info.fallback_reason``.
    """
    import mlflow
    from mlflow import MlflowClient

    client = client or MlflowClient()
    reasons: list[str] = []
    for i, uri in enumerate((model_uri, *fallback_uris)):
        try:
            found = resolve(uri, client)
        except ModelError as err:
            reasons.append(str(err))
            continue
        pyfunc = mlflow.pyfunc.load_model(found.load_uri)
        flavors = [f for f in pyfunc.metadata.flavors if f != "python_function"]
        info = ModelInfo(
            requested_uri=model_uri,
            resolved_uri=found.load_uri,
            name=found.name,
            version=found.version,
            source="primary" if i == 0 else "fallback",
            fallback_reason="; ".join(reasons) or None,
            run_id=found.run_id or pyfunc.metadata.run_id,
            flavor=flavors[0] if flavors else "python_function",
            tags=found.tags,
        )
        if found.bundle is not None:  # packaged by the package stage: say what it was
            why = found.bundle.get("fallback_reason")
            info = ModelInfo(**{**info.__dict__, "source": "bundled",
                                "fallback_reason": f"packaged as {found.bundle.get('source')}"
                                + (f": {why}" if why else "")})
        elif found.name is None and i == 0:
            info = ModelInfo(**{**info.__dict__, "source": "local"})
        return PyfuncSignalModel(pyfunc, info, default_features, window_rows,
                                 accelerate=accelerate)
    raise ModelError("no model could be loaded: " + "; ".join(reasons))
