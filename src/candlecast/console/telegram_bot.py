"""``candlecast telegram``: chat control and alerts with python-telegram-bot.

* Commands, only from ``console.telegram.allowed_chat_ids``: ``/status``, ``/positions``,
  ``/profit`` (read-only) and ``/pause``, ``/resume``, ``/kill <reason>`` (through
  :class:`~candlecast.console.controls.Controls`: the same files as ``candlecast trade``; they
  also need the control token to be configured where the bot runs -- no token, no controls).
  Anything from another chat gets no answer and is recorded in the control audit log.
* Alerts to the allowed chats: the trader's fills, kills, halts and data problems read from its
  journal (:mod:`candlecast.console.watch`), and every ops alert (drift, promotion, rejection,
  rollback, unhealthy service) through the existing webhook path: point
  ``CANDLECAST_ALERT_WEBHOOK`` at this bot's intake, ``http://127.0.0.1:8766/alerts/<control
  token>`` (the token in the path is checked in constant time; refusals are audited). A
  ``trader_halted`` webhook is skipped there: the journal already reports it.

The bot token comes from the environment and is never logged: the Bot API URLs carry it, so the
``httpx`` logger is kept at WARNING and a filter redacts it from every log record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from candlecast.console import messages
from candlecast.console.config import TelegramConfig
from candlecast.console.controls import ControlResult
from candlecast.console.state import Console
from candlecast.console.watch import JournalWatcher
from candlecast.monitoring.alerts import EVENTS

log = logging.getLogger(__name__)
SEND_RETRIES = 3


class RedactSecret(logging.Filter):
    """Replaces a secret in every log record's message and arguments."""

    def __init__(self, secret: str, label: str = "<bot token>") -> None:
        super().__init__()
        self.secret, self.label = secret, label

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            message = record.getMessage()
            if self.secret in message:
                record.msg, record.args = message.replace(self.secret, self.label), None
        return True


@contextlib.contextmanager
def redacted_logging(secret: str) -> Iterator[None]:
    """While inside: no log handler can print ``secret`` (and httpx does not log URLs)."""
    flt = RedactSecret(secret)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(flt)
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        httpx_logger.setLevel(level)
        for handler in handlers:
            handler.removeFilter(flt)


class ChatConsole:
    """The bot: handlers, alert delivery, the journal watcher loop and the webhook intake."""

    def __init__(self, console: Console, config: TelegramConfig, bot_token: str,
                 watcher: JournalWatcher | None = None) -> None:
        if not bot_token:
            raise ValueError(f"the Telegram bot token is missing: set {config.bot_token_env}")
        self.console, self.config, self.watcher = console, config, watcher
        self.allowed = frozenset(config.allowed_chat_ids)
        self._bot_token = bot_token
        self.application: Any = None  # built in serve(), where logging is redacted
        self.intake_port: int | None = None  # the bound port once the intake runs

    def __repr__(self) -> str:
        return f"ChatConsole(allowed_chats={sorted(self.allowed)})"

    # ------------------------------------------------------------------ building
    def _build(self) -> Any:
        from telegram.ext import Application, CommandHandler, MessageHandler, filters

        app = (Application.builder().token(self._bot_token)
               .base_url(self.config.api_base_url).build())
        allowed = filters.Chat(chat_id=sorted(self.allowed))
        reads: dict[str, Callable[[Mapping[str, Any]], str]] = {
            "status": lambda t: messages.status_text(t, self._registry()),
            "positions": messages.positions_text, "profit": messages.profit_text}
        for name, render in reads.items():
            app.add_handler(CommandHandler(name, self._reader(render), filters=allowed))
        for action in ("pause", "resume", "kill"):
            app.add_handler(CommandHandler(action, self._controller(action), filters=allowed))
        app.add_handler(CommandHandler(["help", "start"], self._help, filters=allowed))
        app.add_handler(MessageHandler(~allowed, self._refuse))
        app.add_error_handler(self._on_error)
        return app

    def _registry(self) -> Mapping[str, Any] | None:
        return self.console.registry.snapshot() if self.console.registry else None

    # ------------------------------------------------------------------ handlers
    def _reader(self, render: Callable[[Mapping[str, Any]], str]
                ) -> Callable[[Any, Any], Coroutine[Any, Any, None]]:
        async def handler(update: Any, context: Any) -> None:
            text = await asyncio.to_thread(lambda: render(self.console.trader.snapshot()))
            await update.effective_message.reply_text(text)
        return handler

    def _controller(self, action: str) -> Callable[[Any, Any], Coroutine[Any, Any, None]]:
        async def handler(update: Any, context: Any) -> None:
            reason = " ".join(context.args or [])
            token = self.console.token
            result: ControlResult = await asyncio.to_thread(
                self.console.controls.execute, action, source="telegram",
                client=f"chat {update.effective_chat.id}", authorized=token.configured,
                refused_because=f"controls are disabled: {token.env_var} is not set where "
                "the bot runs", reason=reason)
            text = result.message if result.accepted else f"refused: {result.message}"
            await update.effective_message.reply_text(text)
        return handler

    async def _help(self, update: Any, context: Any) -> None:
        await update.effective_message.reply_text(messages.HELP)

    async def _refuse(self, update: Any, context: Any) -> None:
        """Not an allowed chat: no answer (nothing to learn about this bot), but recorded."""
        chat = update.effective_chat.id if update.effective_chat else "?"
        user = update.effective_user.id if update.effective_user else "?"
        text = (update.effective_message.text or "") if update.effective_message else ""
        word = text.split()[0][:40] if text.startswith("/") else "message"
        await asyncio.to_thread(self.console.controls.audit.record, "telegram",
                                f"chat {chat} user {user}", word.lstrip("/"), False,
                                "chat not allowed (console.telegram.allowed_chat_ids)")
        log.warning("refused %s from chat %s (not allowed)", word, chat)

    async def _on_error(self, update: Any, context: Any) -> None:
        log.warning("telegram handler failed: %r", context.error)

    # ------------------------------------------------------------------ alerts
    async def deliver(self, payload: Mapping[str, Any]) -> int:
        """Send an alert payload to every allowed chat; returns how many got it."""
        text = messages.alert_text(payload)
        delivered = 0
        for chat in sorted(self.allowed):
            for attempt in range(SEND_RETRIES):
                try:
                    await self.application.bot.send_message(chat_id=chat, text=text)
                    delivered += 1
                    break
                except Exception as error:  # noqa: BLE001 - an alert never stops the bot
                    log.warning("alert %s to chat %s failed (%s), attempt %d",
                                payload.get("event"), chat, type(error).__name__, attempt + 1)
                    await asyncio.sleep(0.5 * 2**attempt)
        return delivered

    async def _watch(self, stop: asyncio.Event) -> None:
        if self.watcher is None:
            return
        while not stop.is_set():
            try:
                alerts = await asyncio.to_thread(self.watcher.poll)
            except Exception as error:  # noqa: BLE001 - keep watching
                log.warning("journal watch failed: %r", error)
                alerts = []
            for payload in alerts:
                await self.deliver(payload)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.watch_interval_s)

    def intake_app(self) -> Any:
        """The ops webhook intake: ``POST /alerts/<control token>`` with an alert payload."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        token, audit = self.console.token, self.console.controls.audit

        async def alerts(request: Request) -> JSONResponse:
            client = request.client.host if request.client else "?"
            if not token.verify(request.path_params["token"]):
                why = ("no control token configured" if not token.configured
                       else "invalid token in the webhook URL")
                await asyncio.to_thread(audit.record, "alert-intake", client, "alert", False, why)
                return JSONResponse({"error": why}, status_code=401 if token.configured else 403)
            try:
                payload = await request.json()
            except ValueError:
                return JSONResponse({"error": "body is not JSON"}, status_code=400)
            if not isinstance(payload, dict) or payload.get("event") not in EVENTS:
                return JSONResponse({"error": "not a candlecast alert"}, status_code=422)
            if payload["event"] == "trader_halted":
                return JSONResponse({"delivered": 0, "note": "halts come from the journal"})
            return JSONResponse({"delivered": await self.deliver(payload)})

        return Starlette(routes=[Route("/alerts/{token}", alerts, methods=["POST"])])

    # ------------------------------------------------------------------ running
    async def serve(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Poll for commands, watch the journal and take webhooks until ``stop`` is set."""
        from telegram import BotCommand

        server = None  # bound first: a port in use stops the bot before it polls
        if self.config.alert_port is not None:
            server = _IntakeServer(self.intake_app(), self.config.alert_host,
                                   self.config.alert_port)
            self.intake_port = server.port
        with redacted_logging(self._bot_token), contextlib.closing(
                server.socket if server is not None else _NoSocket()):
            app = self.application = self._build()
            async with app:
                await app.start()
                await app.updater.start_polling(timeout=self.config.poll_timeout_s,
                                                allowed_updates=["message"])
                with contextlib.suppress(Exception):  # only the menu in the chat app
                    await app.bot.set_my_commands([BotCommand(name, text[:60]) for name, text
                                                   in messages.COMMAND_HELP.items()])
                tasks = [asyncio.create_task(self._watch(stop))]
                if server is not None:
                    tasks.append(asyncio.create_task(server.serve()))
                if ready is not None:
                    ready()
                await stop.wait()
                if server is not None:
                    server.should_exit = True
                await asyncio.gather(*tasks, return_exceptions=True)
                await app.updater.stop()
                await app.stop()


class _NoSocket:
    def close(self) -> None:
        return


class _IntakeServer:
    """uvicorn on the bot's event loop (on a socket bound here, so a port in use is a clear
    error), without taking over its signal handling."""

    def __init__(self, asgi: Any, host: str, port: int) -> None:
        import socket

        import uvicorn

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            self.socket.bind((host, port))
        except OSError as error:
            self.socket.close()
            raise RuntimeError(f"the alert intake cannot listen on {host}:{port}: "
                               f"{error.strerror}") from error
        self.port = int(self.socket.getsockname()[1])
        self._server = Quiet(uvicorn.Config(asgi, host=host, port=self.port,
                                            log_level="warning", lifespan="off",
                                            access_log=False))

    @property
    def should_exit(self) -> bool:
        return bool(self._server.should_exit)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._server.should_exit = value

    async def serve(self) -> None:
        try:
            await self._server.serve(sockets=[self.socket])
        finally:
            self.socket.close()
