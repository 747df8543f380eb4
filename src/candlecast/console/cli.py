"""``candlecast dashboard`` and ``candlecast telegram``: the edges that read params.yaml and the
environment (the control token, the bot token) once and start the servers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

RootOption = Annotated[Path, typer.Option("--root", help="Project root (holds params.yaml).")]
ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="Params file (default: <root>/params.yaml).")
]


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)


def _load(root: Path, params: Path | None, **overrides: Any) -> tuple[Any, Any, Any]:
    """(params, console config with overrides, the console) -- the token from the env."""
    from candlecast.common.auth import control_token_from_env
    from candlecast.config import load_params
    from candlecast.console.state import build_console

    loaded = load_params(params or root / "params.yaml")
    config = loaded.console.model_copy(update={k: v for k, v in overrides.items()
                                               if v is not None})
    token = control_token_from_env(os.environ, config.control_token_env)
    return loaded, config, build_console(loaded, root.resolve(), token, config)


def dashboard_command(
    root: RootOption = Path(),
    params: ParamsOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default "
                                             "console.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default console.port)."
                                             )] = None,
) -> None:
    """Serve the live dashboard: equity, positions, orders, fills, risk decisions, signals,
    champion and drift; pause/resume/kill with the control token."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _, config, console = _load(root, params, host=host, port=port)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    import uvicorn

    from candlecast.console.app import create_app, is_loopback

    if not is_loopback(config.host):
        typer.echo(f"warning: binding {config.host}: the page is reachable from other machines "
                   "(its data only with the control token); prefer an SSH tunnel", err=True)
    controls = ("on (token in $" + console.token.env_var + ")" if console.token.configured
                else f"off: set {console.token.env_var} to enable pause/resume/kill")
    typer.echo(f"candlecast dashboard on http://{config.host}:{config.port}/  "
               f"(trader state {console.trader.state_db}; controls {controls})")
    uvicorn.run(create_app(console, config.host), host=config.host, port=config.port,
                log_level="warning", access_log=False)


def telegram_command(
    root: RootOption = Path(),
    params: ParamsOption = None,
) -> None:
    """Run the Telegram bot: /status /positions /profit /pause /resume /kill <reason> from the
    allowed chats; alerts on fills, halts, kills, data problems, drift and promotions."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from candlecast.console.telegram_bot import ChatConsole
    from candlecast.console.watch import JournalWatcher

    try:
        _, config, console = _load(root, params)
        telegram = config.telegram
        bot_token = os.environ.get(telegram.bot_token_env, "").strip()
        if not telegram.allowed_chat_ids:
            raise ValueError("console.telegram.allowed_chat_ids is empty: nobody could command "
                             "the bot or get its alerts")
        cursor = root.resolve() / telegram.alert_cursor
        watcher = JournalWatcher(console.trader, cursor)
        if not cursor.exists():
            watcher.skip_to_end()  # first start: alert from now on, not the whole history
        bot = ChatConsole(console, telegram, bot_token, watcher)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await bot.serve(stop, ready=lambda: typer.echo(
            f"candlecast telegram bot running for chats {sorted(bot.allowed)}; ops webhook "
            f"intake on {telegram.alert_host}:{bot.intake_port}" if bot.intake_port
            else "candlecast telegram bot running (no webhook intake)"))

    try:
        asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback with the token
        message = f"{type(exc).__name__}: {exc}".replace(bot_token, "<bot token>")
        _fail(RuntimeError(message))
