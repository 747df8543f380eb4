"""The dashboard: a FastAPI app serving one static page, its JSON and the controls.

* ``GET /`` the page (HTML + JS + plotly.js served from the installed ``plotly`` package: no
  CDN, works offline); it fetches ``GET /api/state`` every ``console.refresh_s`` seconds and
  redraws in place (no reload).
* ``GET /api/state`` everything shown (:meth:`Console.snapshot`). Open to loopback clients;
  from anywhere else only with the control token (bind elsewhere than 127.0.0.1 at your risk).
* ``POST /api/control/{pause|resume|kill}`` with ``Authorization: Bearer <token>`` (and
  ``{"reason": ...}`` for a kill): the same flag files as ``candlecast trade pause|resume|kill``.
  No token configured (403), none or a wrong one presented (401): refused, and the refusal is in
  the audit log the page shows. A header cannot be set by a cross-site form, so the controls are
  not reachable by CSRF; the Host header is checked against the loopback names when bound to
  loopback (no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from candlecast.common.auth import bearer_token
from candlecast.console.state import Console

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


class KillBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reason: str = Field(default="", max_length=1000)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def plotly_js() -> Path:
    """plotly.js as bundled by the ``plotly`` Python package."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def create_app(console: Console, host: str = "127.0.0.1") -> FastAPI:
    app = FastAPI(title="candlecast console", docs_url=None, redoc_url=None, openapi_url=None)
    if is_loopback(host):
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES))
    page = (STATIC / "dashboard.html").read_text().replace(
        "{{REFRESH_MS}}", str(int(console.config.refresh_s * 1000)))
    token = console.token

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "?"

    def may_view(request: Request) -> bool:
        if is_loopback(client_of(request)):
            return True
        return token.verify(bearer_token(request.headers.get("authorization")))

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name == "plotly.min.js":
            return FileResponse(plotly_js(), media_type="text/javascript")
        if name not in ASSETS:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/state")
    def state(request: Request) -> Response:
        if not may_view(request):
            return JSONResponse({"error": "viewing from a non-local address needs the control "
                                 "token"}, status_code=401)
        return JSONResponse(console.snapshot(), headers={"cache-control": "no-store"})

    @app.post("/api/control/{action}")
    def control(action: str, request: Request, body: KillBody | None = None) -> Response:
        presented = bearer_token(request.headers.get("authorization"))
        client = client_of(request)
        controls = console.controls
        if not token.configured:
            result = controls.execute(action, source="dashboard", client=client,
                                      authorized=False, refused_because="controls are disabled:"
                                      f" {token.env_var} is not set where the dashboard runs")
            status = 403
        elif not token.verify(presented):
            why = "no control token presented" if presented is None else "invalid control token"
            result = controls.execute(action, source="dashboard", client=client,
                                      authorized=False, refused_because=why)
            status = 401
        else:
            result = controls.execute(action, source="dashboard", client=client,
                                      authorized=True, reason=body.reason if body else "")
            status = 200 if result.accepted else 400
        log.info("control %s from %s: %s", action, client,
                 "done" if result.accepted else f"refused ({result.message})")
        payload: dict[str, Any] = {"action": result.action, "accepted": result.accepted,
                                   "message": result.message}
        return JSONResponse(payload, status_code=status)

    return app
