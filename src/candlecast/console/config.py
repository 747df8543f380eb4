"""The ``console:`` section of ``params.yaml``: the operator's dashboard and the Telegram bot.

Secrets are never part of it: the control token and the bot token come from the environment
variables named here (read once, at the CLI edge).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from candlecast.common.auth import DEFAULT_TOKEN_ENV


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TelegramConfig(_Frozen):
    """``candlecast telegram``: chat commands from the allowed chats, alerts to them."""

    bot_token_env: str = "CANDLECAST_TELEGRAM_TOKEN"  # noqa: S105 - a variable name
    #: the only chats that may command the bot (and that receive alerts); empty: nobody
    allowed_chat_ids: tuple[int, ...] = ()
    #: the Bot API endpoint (a self-hosted Bot API server, or a fake one in tests)
    api_base_url: str = "https://api.telegram.org/bot"
    #: the ops webhook intake: point ``CANDLECAST_ALERT_WEBHOOK`` at
    #: ``http://<alert_host>:<alert_port>/alerts/<control token>``; None: no intake (0: any
    #: free port)
    alert_host: str = "127.0.0.1"
    alert_port: int | None = Field(default=8766, ge=0, le=65535)
    #: the journal watcher's position (so a restarted bot continues where it stopped)
    alert_cursor: str = "data/trading/telegram_alert_cursor.json"
    #: how often the trader's journal is read for new fills, kills and data problems
    watch_interval_s: float = Field(default=2.0, gt=0, le=300)
    #: long-poll timeout of getUpdates
    poll_timeout_s: int = Field(default=10, ge=0, le=50)

    @field_validator("api_base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"console.telegram.api_base_url must be http(s), got {value!r}")
        return value


class ConsoleConfig(_Frozen):
    """``candlecast dashboard``: a read-only page on localhost, controls behind the token."""

    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=0, le=65535)
    #: seconds between the page's refreshes (no reload: the page fetches ``/api/state``)
    refresh_s: float = Field(default=2.0, ge=0.2, le=600)
    #: the environment variable holding the control token (pause/resume/kill)
    control_token_env: str = DEFAULT_TOKEN_ENV
    #: every control request (done or refused), one JSON line each; shown on the page
    audit_log: str = "data/trading/control_audit.jsonl"
    #: rows of the fills, decisions, events and audit tables
    recent_rows: int = Field(default=50, ge=1, le=5000)
    #: the equity curve is thinned to at most this many points for the plot
    max_plot_points: int = Field(default=3000, ge=100, le=200_000)
    #: seconds the MLflow registry view is cached
    registry_cache_s: float = Field(default=15.0, ge=0)
    #: per-series backtest outputs of the ``backtest`` stage (``<dir>/<series>/equity.csv``)
    backtest_reports: str = "reports/backtest"
    #: the backtest strategy compared with the paper equity; None: the curve table's first
    #: (primary) strategy, what the backtest stage trades the model with
    backtest_strategy: str | None = None
    telegram: TelegramConfig = TelegramConfig()
