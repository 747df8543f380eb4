"""Notifications: a JSON POST to a webhook for drift, retrain outcomes, manual promotions and
rollbacks, trader halts and an unhealthy signal service (and the payloads of the console's
journal alerts: fills, kills, data problems -- ``candlecast.console.watch``).

A notifier never raises into the caller (a flow or the trader): delivery is retried with
backoff on connection errors, 429 and 5xx, then given up with a warning. The URL is a secret
(it often carries a token): it is never logged; only its host is.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from candlecast.monitoring.config import AlertConfig

log = logging.getLogger(__name__)

EVENTS = frozenset({"drift_detected", "retrain_promoted", "retrain_rejected", "trader_halted",
                    "service_unhealthy", "rollback", "champion_promoted",
                    # from the trader's journal (candlecast.console.watch)
                    "trade_fill", "trader_killed", "stale_data"})


class Notifier(Protocol):
    def notify(self, event: str, message: str, **details: Any) -> bool: ...


class NullNotifier:
    """No webhook configured: alerts are only logged."""

    def notify(self, event: str, message: str, **details: Any) -> bool:
        log.info("alert %s (no webhook configured): %s", event, message)
        return False


def alert_payload(event: str, message: str, details: Mapping[str, Any],
                  when: datetime | None = None) -> dict[str, Any]:
    if event not in EVENTS:
        raise ValueError(f"unknown alert event {event!r}; expected one of {sorted(EVENTS)}")
    return {
        "source": "candlecast",
        "event": event,
        "message": message,
        "time": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "details": {k: v if isinstance(v, str | int | float | bool | type(None)) else str(v)
                    for k, v in details.items()},
    }


class WebhookNotifier:
    def __init__(self, url: str, config: AlertConfig | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the alert webhook must be an http(s) URL")
        self._url = url
        self.config = config or AlertConfig()
        self.sleep = sleep
        self.host = urlsplit(url).hostname or "?"

    def __repr__(self) -> str:  # never show the URL
        return f"WebhookNotifier(host={self.host!r})"

    def notify(self, event: str, message: str, **details: Any) -> bool:
        try:
            payload = alert_payload(event, message, details)
        except ValueError as err:
            log.warning("alert not sent: %s", err)
            return False
        # urllib, not httpx: httpx logs every request URL at INFO, and the URL is a secret
        body = json.dumps(payload).encode()
        cfg = self.config
        problem = "not attempted"
        for attempt in range(cfg.retries + 1):
            request = urllib.request.Request(  # noqa: S310 - http(s) only (checked)
                self._url, data=body, method="POST",
                headers={"content-type": "application/json", "user-agent": "candlecast"})
            try:
                with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:  # noqa: S310 - http(s) only, checked in notifier_from_env
                    response.read()
                log.info("alert %s delivered to %s", event, self.host)
                return True
            except urllib.error.HTTPError as err:
                problem = f"HTTP {err.code}"
                if err.code != 429 and err.code < 500:
                    break  # the receiver refuses it: retrying will not help
            except Exception as err:  # noqa: BLE001 - never raise into a flow or the trader
                problem = type(err).__name__
            if attempt < cfg.retries:
                self.sleep(cfg.backoff_s * 2**attempt)
        log.warning("alert %s to %s not delivered: %s", event, self.host, problem)
        return False


def notifier_from_env(env: Mapping[str, str], config: AlertConfig | None = None) -> Notifier:
    """The webhook notifier if ``config.webhook_env`` is set in ``env``, else a null one."""
    config = config or AlertConfig()
    url = env.get(config.webhook_env, "").strip()
    if not url:
        return NullNotifier()
    if urlsplit(url).scheme not in ("http", "https"):  # also keeps urlopen off file:// etc.
        log.warning("%s is not an http(s) URL; alerts disabled", config.webhook_env)
        return NullNotifier()
    return WebhookNotifier(url, config)


def check_service(url: str, notifier: Notifier, timeout_s: float = 5.0) -> dict[str, Any]:
    """Probe the signal service's ``/readyz`` and ``/metadata``; alert if not ready."""
    import httpx

    base = url.rstrip("/")
    status: dict[str, Any] = {"url": base, "ready": False}
    try:
        ready = httpx.get(f"{base}/readyz", timeout=timeout_s)
        status["ready"] = ready.status_code == 200
        meta = httpx.get(f"{base}/metadata", timeout=timeout_s)
        if meta.status_code == 200:
            body = meta.json()
            status["model_version"] = body.get("model_version")
            status["load_error"] = body.get("load_error")
    except httpx.HTTPError as err:
        status["error"] = f"{type(err).__name__}: {err}"
    if not status["ready"]:
        why = status.get("error") or status.get("load_error") or "not ready"
        notifier.notify("service_unhealthy", f"signal service {base} unhealthy: {why}",
                        **{k: v for k, v in status.items() if k != "url"})
    return status
