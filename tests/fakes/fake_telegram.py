"""A fake Telegram Bot API server on 127.0.0.1 (a thread), enough for python-telegram-bot's
long polling and sending: ``getMe``, ``deleteWebhook``, ``getUpdates`` (long poll, offsets),
``sendMessage``, ``setMyCommands``; anything else answers ``ok: true, result: true``.

Point the bot at ``fake.base_url`` (``http://127.0.0.1:<port>/bot``; the library appends the
token). :meth:`say` queues a user's message as an update; ``sent`` collects every
``sendMessage`` (chat id, text); ``tokens`` the bot tokens seen in the request paths.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "candlecast", "username": "cc_test_bot",
            "can_join_groups": False, "can_read_all_group_messages": False,
            "supports_inline_queries": False}


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeBotApi:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.sent: list[tuple[int, str]] = []
        self.calls: list[str] = []
        self.tokens: set[str] = set()
        self._next_update = 1
        self._next_message = 100
        self._cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                kind = self.headers.get("Content-Type", "")
                if "json" in kind:
                    params = json.loads(raw or "{}")
                else:
                    params = {k: _decode(v[0]) for k, v in parse_qs(raw).items()}
                _, token, method = self.path.rsplit("/", 2)
                fake.tokens.add(token.removeprefix("bot"))
                result = fake.handle(method, params)
                body = json.dumps({"ok": True, "result": result}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a long poll (the bot is stopping)

            do_GET = do_POST  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/bot"

    def handle(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append(method)
        if method == "getMe":
            return BOT_USER
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            deadline = time.monotonic() + min(float(params.get("timeout") or 0), 0.5)
            with self._cond:
                while True:
                    ready = [u for u in self.updates if u["update_id"] >= offset]
                    if ready or time.monotonic() >= deadline:
                        return ready
                    self._cond.wait(0.05)
        if method == "sendMessage":
            chat = int(params["chat_id"])
            with self._cond:
                self.sent.append((chat, str(params["text"])))
                self._next_message += 1
                message_id = self._next_message
                self._cond.notify_all()
            return {"message_id": message_id, "date": int(time.time()),
                    "chat": {"id": chat, "type": "private"}, "from": BOT_USER,
                    "text": params["text"]}
        return True

    def say(self, chat_id: int, text: str, user_id: int | None = None) -> None:
        """A user in chat ``chat_id`` sends ``text`` to the bot."""
        with self._cond:
            self._next_message += 1
            message: dict[str, Any] = {
                "message_id": self._next_message, "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": "op"},
                "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "op"},
                "text": text}
            if text.startswith("/"):
                message["entities"] = [{"type": "bot_command", "offset": 0,
                                        "length": len(text.split()[0])}]
            self.updates.append({"update_id": self._next_update, "message": message})
            self._next_update += 1
            self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> list[tuple[int, str]]:
        """Wait until ``predicate(sent)`` is true; returns the messages sent so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.sent):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; sent so far: {self.sent}")
                self._cond.wait(min(left, 0.1))
            return list(self.sent)

    def __enter__(self) -> FakeBotApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
