"""ASGI middleware in front of the service's routes: every bad payload becomes a 4xx JSON
``{"error": ..., "field": ...}`` before BentoML sees it.

BentoML 1.4 answers schema errors with its own body (``{"error", "detail"}``, and for some
4xx a JSON *list*), has no request size limit and parses ``multipart``/``pickle`` bodies too.
This guard, for ``/signal``, ``/predict``, ``/portfolio``, ``/metadata`` and ``/reload`` only:

* refuses methods other than POST (405; ``GET /metadata`` is turned into ``POST``);
* refuses a state-changing route (:data:`CONTROL_ROUTES`: ``/reload``) without the control
  token (``candlecast.common.auth``: ``Authorization: Bearer <token>``, compared in constant
  time): 401, or 403 when the server has no token configured (every control off); each refusal
  is logged with the route and the client address, never with what was presented;
* refuses content types other than ``application/json`` (415);
* refuses bodies over ``max_body_bytes`` (413), by ``Content-Length`` or while reading;
* validates the body with the same pydantic model BentoML will use and answers the first
  error naming its field (400 for malformed JSON, 422 otherwise);
* then replays the body to BentoML.

Light on purpose (pydantic + the schemas): it is imported by ``bentos/service.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from candlecast.common.auth import DEFAULT_TOKEN_ENV, ControlToken, bearer_token
from candlecast.serving.schemas import (
    PortfolioRequest,
    PredictRequest,
    RequestError,
    SeriesRequest,
    request_error,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: route -> the request model validated here (None: the body is ignored)
ROUTES: dict[str, type[BaseModel] | None] = {
    "/signal": SeriesRequest,
    "/predict": PredictRequest,
    "/portfolio": PortfolioRequest,
    "/metadata": None,
    "/reload": None,
}
#: routes that change the service's state: they need the control token
CONTROL_ROUTES: frozenset[str] = frozenset({"/reload"})

log = logging.getLogger(__name__)


@dataclass
class GuardSettings:
    """Mutable on purpose: the service sets the limit from its config once loaded."""

    max_body_bytes: int = 1_000_000
    #: the control token of :data:`CONTROL_ROUTES`; the default (none configured) refuses all
    control: ControlToken = field(default_factory=lambda: ControlToken(DEFAULT_TOKEN_ENV, None))


async def send_error(send: Send, err: RequestError,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(err.body()).encode()
    await send({
        "type": "http.response.start",
        "status": err.status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: Callable[..., Awaitable[None]], settings: GuardSettings | None = None
                 ) -> None:
        self.app = app
        self.settings = settings or GuardSettings()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in ROUTES:
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/metadata" and method == "GET":
            scope = {**scope, "method": "POST"}
        elif method != "POST":
            await send_error(send, RequestError(405, f"{path} accepts POST only", "method"),
                             [(b"allow", b"POST")])
            return
        if path in CONTROL_ROUTES:
            refusal = self._refuse_control(scope)
            if refusal is not None:
                await send_error(send, refusal, [(b"www-authenticate", b"Bearer")])
                return
        try:
            body = await self._read_body(scope, receive)
            model = ROUTES[path]
            if model is None:
                body = b"{}"
            else:
                try:
                    model.model_validate_json(body)
                except ValidationError as err:
                    raise request_error(err) from None
        except RequestError as err:
            await send_error(send, err)
            return
        await self.app(scope, _replay(body, receive), send)

    def _refuse_control(self, scope: Scope) -> RequestError | None:
        """None if the request carries the control token, else the refusal (logged)."""
        token = self.settings.control
        authorization = next((v.decode("latin-1") for k, v in scope.get("headers", [])
                              if k.lower() == b"authorization"), None)
        presented = bearer_token(authorization)
        if token.verify(presented):
            return None
        client = scope.get("client") or ("?", 0)
        path = scope["path"]
        if not token.configured:
            why = f"controls are disabled: {token.env_var} is not set on the server"
            status = 403
        else:
            why = "wrong control token" if presented else "no control token"
            status = 401
        log.warning("refused %s %s from %s: %s", scope["method"], path, client[0], why)
        message = f"{path} needs `Authorization: Bearer <{token.env_var}>`: {why}"
        return RequestError(status, message, "authorization")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media != "application/json":
            raise RequestError(415, f"content type must be application/json, got {media!r}",
                               "content-type")
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError(400, "invalid Content-Length header", "content-length")
            if int(declared) > limit:
                raise RequestError(413, f"request body of {declared} bytes exceeds the limit of "
                                   f"{limit} bytes", "body")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, "client disconnected", "body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body exceeds the limit of {limit} bytes",
                                   "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """The buffered body once, then the real channel (so disconnects are still seen)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive
