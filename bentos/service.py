"""candlecast signal service (BentoML 1.4): a thin shell around ``candlecast.serving``.

Routes: ``POST /signal`` (latest Feast features -> signal; async: a request whose model input
was answered before is answered on the event loop, new model work runs in a worker thread), ``POST /predict`` (candles in the
request -> signal), ``POST /portfolio`` (candles of every coin -> the book's target
weights), ``POST``/``GET /metadata`` (lineage), ``POST /reload`` (pick up a new
champion without dropping requests; needs ``Authorization: Bearer $CANDLECAST_CONTROL_TOKEN``), plus BentoML's ``/livez``,
``/readyz`` (ready once the model is loaded), ``/metrics`` and the OpenAPI page at ``/``
(``/docs.json``). Configuration: ``CANDLECAST_SERVING_CONFIG`` (a JSON ServingConfig),
``CANDLECAST_ROOT``; see docs/serving.md.

Only light modules (pydantic schemas, the ASGI guard) are imported here, because BentoML's
arbiter process imports this file too; pandas, MLflow, Feast and the model are imported by the
worker when it builds the service instance (``candlecast.serving.server``), and loaded in a
background thread so ``/livez`` answers while ``/readyz`` waits for the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import bentoml
from starlette.responses import JSONResponse

from candlecast.common.auth import control_token_from_env
from candlecast.serving.guard import GuardSettings, RequestGuard
from candlecast.serving.schemas import (
    MetadataResponse,
    PortfolioRequest,
    PortfolioResponse,
    PredictRequest,
    RequestError,
    SeriesRequest,
    SignalResponse,
)

GUARD = GuardSettings()


def _respond(result: SignalResponse | PortfolioResponse | RequestError
             ) -> SignalResponse | PortfolioResponse | JSONResponse:
    if isinstance(result, RequestError):
        return JSONResponse(result.body(), status_code=result.status)
    return result


# Loopback unless asked: `bentoml serve --host 0.0.0.0` (or BENTOML_HOST) overrides this default.
@bentoml.service(name="candlecast_signal", workers=1, traffic={"timeout": 30},
                 http={"host": "127.0.0.1"})
class SignalService:
    def __init__(self) -> None:
        from candlecast.serving.config import load_serving_config
        from candlecast.serving.server import SignalServer

        config = load_serving_config(os.environ, default_dir=Path(__file__).resolve().parent)
        GUARD.max_body_bytes = config.max_body_bytes
        # the edge reads the environment: POST /reload needs this token (unset: refused)
        GUARD.control = control_token_from_env(os.environ, config.control_token_env)
        self.server = SignalServer(config, freeze_gc=True)
        self._model_limiter = anyio.CapacityLimiter(1)
        self.server.start_loading()

    def __is_ready__(self) -> bool:
        return self.server.ready

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.server.stop()

    @bentoml.api(input_spec=SeriesRequest, output_spec=SignalResponse)
    async def signal(self, exchange: str, symbol: str, timeframe: str, position: float = 0.0,
                     bars_held: int = 0) -> SignalResponse:
        """The latest online features of the series (Feast) -> the model's forecasts -> the
        bundled policy's target position for the caller's ``position`` held ``bars_held``
        bars; 'stale' refuses (keeps the position, opens nothing)."""
        request = SeriesRequest.model_construct(
            exchange=exchange, symbol=symbol, timeframe=timeframe, position=position,
            bars_held=bars_held,
        )
        # the Feast read, window and answer cache on the event loop (about a millisecond);
        # the model, when the input is new, in a worker thread, one at a time
        call = self.server.begin("signal", request)
        if call.pending:
            await anyio.to_thread.run_sync(call.run, limiter=self._model_limiter)
        return _respond(self.server.finish(call))  # type: ignore[return-value]

    @bentoml.api(input_spec=PredictRequest, output_spec=SignalResponse)
    def predict(
        self, exchange: str, symbol: str, timeframe: str, candles: list, position: float = 0.0,
        bars_held: int = 0,
    ) -> SignalResponse:
        """Closed candles in the request -> incremental features -> the policy's target
        (stateless)."""
        request = PredictRequest.model_construct(
            exchange=exchange, symbol=symbol, timeframe=timeframe, candles=candles,
            position=position, bars_held=bars_held,
        )
        return _respond(self.server.handle("predict", request))  # type: ignore[return-value]

    @bentoml.api(input_spec=PortfolioRequest, output_spec=PortfolioResponse)
    def portfolio(self, exchange: str, timeframe: str, candles: dict,
                  positions: dict | None = None) -> PortfolioResponse:
        """Closed candles of every coin of the universe and the book held -> the portfolio
        constructor's target weights for the whole universe (stateless; see
        docs/portfolio.md)."""
        request = PortfolioRequest.model_construct(
            exchange=exchange, timeframe=timeframe, candles=candles, positions=positions or {})
        return _respond(self.server.handle_portfolio(request))  # type: ignore[return-value]

    @bentoml.api(output_spec=MetadataResponse)
    def metadata(self) -> MetadataResponse:
        """Model version, MLflow run, training data version, feature service, params hash."""
        return self.server.metadata()

    @bentoml.api(route="/reload")
    def reload(self) -> dict:
        """Load the configured model again (a new champion) in the background; the current
        model serves until the new one is ready, then both swap at once. ``/metadata`` then
        reports the new version."""
        return self.server.reload()


SignalService.add_asgi_middleware(RequestGuard, settings=GUARD)
