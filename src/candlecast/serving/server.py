"""The signal service's core, independent of BentoML: load, answer, describe.

``bentos/service.py`` is a thin shell around :class:`SignalServer`; tests can also drive it
in-process. Loading (MLflow model, Feast store, window priming) runs in a background thread
so the process answers ``/livez`` at once and ``/readyz`` only when it can predict.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pandas as pd

from candlecast.data.schema import SeriesId, timeframe_to_timedelta
from candlecast.features import feature_names, warmup_bars
from candlecast.policy import Policy
from candlecast.serving.config import ServingConfig
from candlecast.serving.metrics import ServingMetrics, serving_metrics
from candlecast.serving.model import ModelError, SignalModel, load_signal_model
from candlecast.serving.online import FeastReader, WindowCache
from candlecast.serving.portfolio import PortfolioModel, answer_portfolio, describe
from candlecast.serving.schemas import (
    MetadataResponse,
    PortfolioRequest,
    PortfolioResponse,
    PredictRequest,
    RequestError,
    SeriesRequest,
    SignalResponse,
)
from candlecast.serving.signal import (
    candles_frame,
    feature_age,
    features_from_candles,
    is_stale,
    ok_response,
    policy_decision,
    price_from_features,
    risk_suggestion,
    stale_response,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a candle may be reported up to this long before its close time (clock skew)
CLOSE_TOLERANCE = pd.Timedelta(seconds=2)


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _guarded(endpoint: str, work: Callable[[], T]) -> T | RequestError:
    """``work()``, with client errors returned as values and a model failure as a 500."""
    try:
        return work()
    except RequestError as err:
        return err
    except ModelError as err:
        log.exception("model failed on %s", endpoint)
        return RequestError(500, f"model failed: {err}", "model")


@dataclass
class Call:
    """One request between :meth:`SignalServer.begin` and :meth:`SignalServer.finish`:
    answered already (``result``), or with model work left (``work``, see :meth:`run`)."""

    endpoint: str
    start: float
    result: SignalResponse | RequestError | None = None
    work: Callable[[], SignalResponse] | None = None

    @property
    def pending(self) -> bool:
        return self.result is None

    def run(self) -> None:
        """Do the model work, if any (thread-safe to call from a worker thread)."""
        if self.result is None and self.work is not None:
            self.result = _guarded(self.endpoint, self.work)


class SignalServer:
    def __init__(self, config: ServingConfig, clock: Callable[[], pd.Timestamp] = utc_now,
                 metrics: ServingMetrics | None = None, freeze_gc: bool = False) -> None:
        self.config = config
        self.clock = clock
        #: after a (re)load, move every object alive into the collector's permanent
        #: generation (the service process, not in-process use: it is process-wide)
        self.freeze_gc = freeze_gc
        self.metrics = metrics or serving_metrics()
        #: the model and its window cache, swapped together in ONE assignment (a reload
        #: replaces both at once; a request reads the pair once)
        self._serving: tuple[SignalModel, WindowCache | None] | None = None
        self.reader: FeastReader | None = None
        self.known: frozenset[str] = frozenset(config.known_series or ())
        self.load_error: str | None = None
        self._ready = threading.Event()
        self._done = threading.Event()  # loading finished (loaded, or gave up)
        self._attempts = threading.Event()  # at least one attempt made
        self._stop = threading.Event()
        self._model: SignalModel | None = None  # loaded in an earlier, otherwise failed attempt
        self._reload_lock = threading.Lock()
        self._reloader: threading.Thread | None = None
        self.reload_error: str | None = None
        self.reloads = 0
        self._policies: dict[tuple[int, pd.Timedelta], Policy] = {}
        #: the book's model of /portfolio (optional: see ServingConfig.portfolio_model_uri)
        self.portfolio: PortfolioModel | None = None
        self.portfolio_error: str | None = None

    @property
    def model(self) -> SignalModel | None:
        serving = self._serving
        return serving[0] if serving is not None else None

    @property
    def window(self) -> WindowCache | None:
        serving = self._serving
        return serving[1] if serving is not None else None

    # ------------------------------------------------------------------ loading
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait until loading finished (ready, or failed without retry)."""
        return self._done.wait(timeout)

    def wait_attempted(self, timeout: float | None = None) -> bool:
        """Wait until at least one load attempt has been made."""
        return self._attempts.wait(timeout)

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="candlecast-model-loader", daemon=True)
        thread.start()
        return thread

    def load(self) -> None:
        """Load model and feature store. A failure is kept (``/metadata``, ``load_error``) and,
        with ``load_retry_seconds``, retried until it succeeds or :meth:`stop` is called: the
        process stays up and not-ready instead of dying, so operators can see why."""
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                self._load()
                self.load_error = None
                self._freeze()
                self._ready.set()
                break
            except Exception as err:  # noqa: BLE001 - any failure must surface in /metadata
                self.load_error = f"{type(err).__name__}: {err}"
                if attempt == 1:
                    log.exception("signal service failed to load")
                else:
                    log.warning("load attempt %d failed: %s", attempt, self.load_error)
                retry = self.config.load_retry_seconds
                if retry is None or self._stop.wait(retry):
                    break
            finally:
                self._attempts.set()
        self._done.set()

    def _freeze(self) -> None:
        """``gc.freeze()`` once the model is loaded: the ~800k objects of the loaded stack
        (torch, MLflow, Feast, the ensemble) leave the collector's generations, so a full
        collection no longer walks them (measured ~0.6 s, a pause every request would wait
        for) and copy-on-write pages stay shared. A reload unfreezes first so the previous
        model's reference cycles are collected, then freezes again."""
        if not self.freeze_gc:
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def stop(self) -> None:
        """Stop retrying a failed load (shutdown)."""
        self._stop.set()

    def _load(self) -> None:
        import mlflow

        cfg = self.config
        if self._model is None and ":/" in cfg.resolved_model_uri(cfg.model_uri):
            cfg.check_tracking_store()
        mlflow.set_tracking_uri(cfg.resolved_tracking_uri())
        if cfg.registry_uri:
            mlflow.set_registry_uri(cfg.registry_uri)
        if self.portfolio is None:  # independent of the signal model (it may not exist yet)
            self._load_portfolio()
        model = self._model or self._load_model()
        self._model = model  # a retry after a feature-store failure reuses it
        cache = None
        if cfg.feature_repo is not None:
            reader = FeastReader(cfg.path(cfg.feature_repo), cfg.feature_service,
                                 cfg.feature_view, direct=cfg.direct_online_reads,
                                 config_file=cfg.feature_store_config)
            if not self.known:
                self.known = reader.offline_series()
            cache = self._window_for(model, reader)
            self.reader = reader
        self._serve(model, cache)

    def _load_portfolio(self) -> None:
        """The book's model, if configured; a failure only disables /portfolio (kept in
        ``portfolio_error`` and /metadata)."""
        uri = self.config.portfolio_model_uri
        if uri is None:
            self.portfolio, self.portfolio_error = None, "no serving.portfolio_model_uri"
            return
        try:
            model = load_signal_model(self.config.resolved_model_uri(uri), [],
                                      feature_names(self.config.features), None)
            self.portfolio, self.portfolio_error = PortfolioModel.from_model(model), None
            log.info("portfolio model %s (%s)", model.info.model_version,
                     self.portfolio.config.label())
        except Exception as err:  # noqa: BLE001 - /portfolio reports it; the rest serves on
            self.portfolio, self.portfolio_error = None, f"{type(err).__name__}: {err}"
            log.info("no portfolio model: %s", self.portfolio_error)

    def _load_model(self) -> SignalModel:
        cfg = self.config
        model = load_signal_model(
            cfg.resolved_model_uri(cfg.model_uri),
            [cfg.resolved_model_uri(u) for u in cfg.fallback_model_uris],
            feature_names(cfg.features),
            cfg.window_rows,
            accelerate=cfg.trace_networks,
        )
        trained_on = model.info.lineage("feature_service")
        if trained_on and trained_on != cfg.feature_service:
            raise ModelError(
                f"model {model.info.model_version} was trained on feature service "
                f"{trained_on!r} but the service reads {cfg.feature_service!r}"
            )
        return model

    def _window_for(self, model: SignalModel, reader: FeastReader) -> WindowCache | None:
        missing = [c for c in model.feature_columns if c not in reader.columns]
        if missing:
            raise ModelError(
                f"feature view {self.config.feature_view!r} lacks model inputs {missing[:5]}"
            )
        if model.window_rows <= 1:
            return None
        cache = WindowCache(model.window_rows, model.feature_columns)
        cache.prime(reader.offline_tail(self.known, model.window_rows, model.feature_columns))
        return cache

    def _serve(self, model: SignalModel, cache: WindowCache | None) -> None:
        self._serving = (model, cache)  # one reference assignment: atomic for readers
        info = model.info
        self.metrics.model(info.model_version, info.name or "", info.source, info.run_id or "")
        log.info("serving %s (%s, %s)", info.model_version, info.source, info.resolved_uri)

    # ------------------------------------------------------------------ reload
    def reload(self) -> dict[str, object]:
        """Resolve and load the configured model again (e.g. a new ``champion``) in a
        background thread; requests keep being answered by the current model until the new
        one (and its window) is ready, then both are swapped in one assignment. A failed
        reload keeps the current model and is reported in ``reload_error``."""
        current = self.model.info.model_version if self.model is not None else None
        with self._reload_lock:
            if not self.ready:
                return {"status": "loading", "model_version": current,
                        "detail": "the first load has not finished; nothing to reload"}
            if self._reloader is not None and self._reloader.is_alive():
                return {"status": "already_reloading", "model_version": current}
            self._reloader = threading.Thread(target=self._reload, daemon=True,
                                              name="candlecast-model-reloader")
            self._reloader.start()
        return {"status": "reloading", "model_version": current,
                "last_reload_error": self.reload_error, "reloads": self.reloads}

    def wait_reloaded(self, timeout: float | None = None) -> bool:
        thread = self._reloader
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _reload(self) -> None:
        try:
            model = self._load_model()
            cache = self._window_for(model, self.reader) if self.reader is not None else None
            self._model = model
            self._serve(model, cache)
            self._load_portfolio()
            self.reload_error = None
            self.reloads += 1
            self._freeze()
        except Exception as err:  # noqa: BLE001 - the current model keeps serving
            self.reload_error = f"{type(err).__name__}: {err}"
            log.exception("reload failed; still serving the previous model")

    # ------------------------------------------------------------------ answers
    def handle(self, endpoint: str, request: SeriesRequest) -> SignalResponse | RequestError:
        """Answer ``/signal`` or ``/predict`` and record the metrics. Client errors come back
        as :class:`RequestError` values; a model failure is a 500 of the same shape."""
        call = self.begin(endpoint, request)
        call.run()
        return self.finish(call)

    def begin(self, endpoint: str, request: SeriesRequest) -> Call:
        """The first step of :meth:`handle`: everything up to the model. For ``/signal`` that
        is the Feast read, the staleness check, the window and the answer cache, so a request
        whose exact model input was answered before is complete here (``call.pending`` is
        False); otherwise ``call.run()`` does the model work (the service runs it in a worker
        thread, off the event loop) and :meth:`finish` records the metrics."""
        start = time.perf_counter()
        if endpoint == "predict":
            assert isinstance(request, PredictRequest)
            return Call(endpoint, start, work=lambda: self.predict(request))
        step = _guarded(endpoint, lambda: self._signal_step(request))
        if callable(step):
            return Call(endpoint, start, work=step)
        return Call(endpoint, start, result=step)

    def finish(self, call: Call) -> SignalResponse | RequestError:
        if call.result is None:
            raise RuntimeError("finish() before the call's model work ran (call.run())")
        result = call.result
        if isinstance(result, RequestError):
            self.metrics.error(call.endpoint, result.status, result.field)
            code = result.status
        else:
            self.metrics.signal(call.endpoint, result.action, result.status)
            code = 200
        self.metrics.observe(call.endpoint, code, time.perf_counter() - call.start)
        return result

    def _require_serving(self) -> tuple[SignalModel, WindowCache | None]:
        serving = self._serving
        if serving is None:
            if self.load_error:
                raise RequestError(503, f"model failed to load: {self.load_error}", "model")
            raise RequestError(503, "model is still loading; retry shortly", "model")
        return serving

    def _step(self, timeframe: str) -> pd.Timedelta:
        try:
            return timeframe_to_timedelta(timeframe)
        except (ValueError, OverflowError) as err:
            raise RequestError(422, f"timeframe: {err}", "timeframe") from err

    def _unknown(self, request: SeriesRequest) -> RequestError:
        known = [SeriesId.from_key(k) for k in sorted(self.known)]
        if not any(s.exchange == request.exchange for s in known):
            field = "exchange"
        elif not any(s.exchange == request.exchange and s.timeframe == request.timeframe
                     for s in known):
            field = "timeframe"
        else:
            field = "symbol"
        shown = ", ".join(s.key for s in known[:10]) or "none"
        return RequestError(404, f"unknown series {request.series_id}; known: {shown}", field)

    def signal(self, request: SeriesRequest) -> SignalResponse:
        step = self._signal_step(request)
        return step() if callable(step) else step

    def _signal_step(self, request: SeriesRequest
                     ) -> SignalResponse | Callable[[], SignalResponse]:
        """The answer if no model work is needed (stale features, a memoized model input),
        else a function computing it."""
        model, window = self._require_serving()
        if self.reader is None:
            raise RequestError(503, "no feature store configured: use /predict", "model")
        step = self._step(request.timeframe)
        row = self.reader.latest(request.series_id)
        if row is None:
            raise self._unknown(request)
        now = self.clock()
        self.metrics.feature_age(request.series_id,
                                 feature_age(row.event_timestamp, now).total_seconds())
        version = model.info.model_version
        when = row.event_timestamp.to_pydatetime()
        if is_stale(row.event_timestamp, now, step, self.config.max_feature_age_bars):
            return stale_response(version, when)
        values = row.values
        context = (request, step, row.event_timestamp, price_from_features(values),
                   values.get("atr", float("nan")))
        prepare = getattr(model, "prepare_window", None)
        prepared = None
        if window is not None and prepare is not None:
            prepared = prepare(row.series_id, *window.update_arrays(row, step))
        if prepared is not None:
            cached = model.cached_answer(prepared)  # type: ignore[attr-defined]
            if cached is not None:
                return self._answer(model, cached, *context)
            return lambda: self._answer(
                model, model.answer_window(prepared), *context)  # type: ignore[attr-defined]
        rows = window.update(row, step) if window is not None else row.frame(
            model.feature_columns)
        return lambda: self._answer(model, model.predict(rows), *context)

    def predict(self, request: PredictRequest) -> SignalResponse:
        model, _ = self._require_serving()
        cfg = self.config
        step = self._step(request.timeframe)
        if self.known and request.series_id not in self.known:
            raise self._unknown(request)
        n = len(request.candles)
        need = cfg.min_candles or warmup_bars(cfg.features) + model.window_rows - 1
        if n < need:
            raise RequestError(
                422, f"candles: need at least {need} candles (feature warm-up "
                f"{warmup_bars(cfg.features)} + model window {model.window_rows} - 1), got {n}",
                "candles",
            )
        if n > cfg.max_candles:
            raise RequestError(422, f"candles: at most {cfg.max_candles} candles, got {n}",
                               "candles")
        now = self.clock()
        last_open = pd.Timestamp(request.candles[-1].timestamp)
        if last_open + step > now + CLOSE_TOLERANCE:
            field = f"candles[{n - 1}].timestamp"
            raise RequestError(
                422, f"{field}: candle {last_open.isoformat()} has not closed yet (closes at "
                f"{(last_open + step).isoformat()}); send closed candles only", field,
            )
        feature_time = last_open + step
        if cfg.predict_max_age_bars is not None and is_stale(
            feature_time, now, step, cfg.predict_max_age_bars
        ):
            return stale_response(model.info.model_version, feature_time.to_pydatetime())
        try:
            rows = features_from_candles(candles_frame(request.candles), request.series_id,
                                         request.timeframe, cfg.features)
        except ValueError as err:
            raise RequestError(422, f"candles: {err}", "candles") from err
        out = model.predict(rows.tail(model.window_rows))
        last = rows.iloc[-1]
        return self._answer(model, out, request, step, feature_time, float(last["close"]),
                            float(last["atr"]))

    def _policy(self, model: SignalModel, step: pd.Timedelta) -> Policy | None:
        """The model's bundled policy for bars of ``step`` (built once per model and step)."""
        config = getattr(model, "policy", None)
        if config is None:
            return None
        key = (id(model), step)
        policy = self._policies.get(key)
        if policy is None:
            bars_per_year = pd.Timedelta(days=365) / step
            policy = Policy(config, model.costs, bars_per_year)  # type: ignore[attr-defined]
            self._policies = {key: policy}  # one model at a time: a reload replaces it
        return policy

    def _answer(self, model: SignalModel, out, request: SeriesRequest,  # type: ignore[no-untyped-def]
                step: pd.Timedelta,
                feature_time: pd.Timestamp, price: float, atr: float) -> SignalResponse:
        policy = self._policy(model, step)
        decision = policy_decision(policy, out, request.position, request.bars_held)
        target = 0.0 if decision is None else decision.target
        size, stop, take = risk_suggestion(
            target, price, atr, feature_time, request.timeframe, request.series_id,
            self.config.risk,
        )
        return ok_response(out, policy, decision, size, stop, take, model.info.model_version,
                           feature_time.to_pydatetime())

    def handle_portfolio(self, request: PortfolioRequest) -> PortfolioResponse | RequestError:
        """Answer ``/portfolio`` and record the metrics (errors as values, like
        :meth:`handle`)."""
        start = time.perf_counter()
        result = _guarded("portfolio", lambda: self.portfolio_answer(request))
        if isinstance(result, RequestError):
            self.metrics.error("portfolio", result.status, result.field)
            code = result.status
        else:
            self.metrics.signal("portfolio", result.reason, result.status)
            code = 200
        self.metrics.observe("portfolio", code, time.perf_counter() - start)
        return result

    def portfolio_answer(self, request: PortfolioRequest) -> PortfolioResponse:
        """The book's answer: needs only the portfolio model (loaded first, on its own)."""
        pm = self.portfolio
        if pm is None:
            raise RequestError(503, f"no portfolio model loaded ({self.portfolio_error}); run "
                               "`candlecast portfolio` to register one", "model")
        return answer_portfolio(pm, request, self.clock(), self.config.max_candles,
                                self.config.portfolio_max_age_bars)

    # ------------------------------------------------------------------ lineage
    def metadata(self) -> MetadataResponse:
        cfg = self.config
        model = self.model
        info = model.info if model is not None else None
        return MetadataResponse(
            ready=self.ready,
            model_version=info.model_version if info else None,
            model_name=info.name if info else None,
            model_uri=cfg.model_uri,
            resolved_model_uri=info.resolved_uri if info else None,
            model_source=info.source if info else None,
            fallback_reason=info.fallback_reason if info else None,
            mlflow_run_id=info.run_id if info else None,
            training_data_version=info.lineage("data_version") if info else None,
            feature_service=(info.lineage("feature_service") if info else None)
            or cfg.feature_service,
            params_hash=info.lineage("params_hash") if info else None,
            git_commit=info.lineage("git_commit") if info else None,
            flavor=info.flavor if info else None,
            window_rows=model.window_rows if model else None,
            features=list(model.feature_columns) if model else [],
            max_feature_age_bars=cfg.max_feature_age_bars,
            policy=(model.policy.model_dump(mode="json")  # type: ignore[attr-defined]
                    if getattr(model, "policy", None) is not None else None),
            costs=(model.costs.model_dump(mode="json")  # type: ignore[attr-defined]
                   if getattr(model, "costs", None) is not None else None),
            accelerated_models=list(getattr(model, "accelerated", ())) if model else [],
            load_error=self.load_error,
            portfolio=describe(self.portfolio, self.portfolio_error),
        )

