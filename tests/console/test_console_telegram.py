"""The Telegram bot (python-telegram-bot, real long polling) against a fake Bot API server on
127.0.0.1, over the state of a real paper replay (the signal service answers a real policy's
target position for what the trader reports): commands from the allowed chat work, from any
other chat nothing happens (no answer, no effect) and the refusal is audited; alerts arrive for
a fill and a kill (from the trader's journal) and for an ops alert sent by the ops webhook
notifier to the bot's intake; the bot token never reaches a log."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import pytest
from console_helpers import STEP_NS, TOKEN, console_script, replay_project
from fake_telegram import FakeBotApi
from trading_helpers import FakeSignalService

from candlecast.common.auth import control_token_from_env
from candlecast.console.config import TelegramConfig
from candlecast.console.state import build_console
from candlecast.console.telegram_bot import ChatConsole
from candlecast.console.watch import JournalWatcher
from candlecast.monitoring.alerts import WebhookNotifier
from candlecast.monitoring.config import AlertConfig

pytestmark = pytest.mark.slow
ALLOWED, STRANGER = 111, 222
BOT_TOKEN = "123456:TEST-bot-token-never-logged"  # noqa: S105 - a test value


class RunningBot:
    """``ChatConsole.serve`` on its own event loop in a thread."""

    def __init__(self, bot: ChatConsole) -> None:
        self.bot = bot
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self.stop = asyncio.Event()
            await self.bot.serve(self.stop, ready=self.ready.set)

        try:
            self.loop.run_until_complete(main())
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
            self.ready.set()

    def __enter__(self) -> RunningBot:
        self.thread.start()
        assert self.ready.wait(30), "the bot did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(20)
        assert not self.thread.is_alive(), "the bot did not stop"


def test_chat_commands_alerts_and_refusals(tmp_path, btc_30m, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeSignalService(console_script(btc_30m), STEP_NS) as service, FakeBotApi() as api:
        project = replay_project(tmp_path, btc_30m, service)
        trader = project.trader()
        book = trader.books["BTC/USD"]
        # a state to talk about, before the bot starts: at least 5 candles, a fill, a position
        while not (trader.store.count("ticks") >= 5 and trader.store.last_seq("fills") >= 1
                   and book.pos != 0.0):
            assert trader.run(max_ticks=1).status == "max_ticks"
        params = project.params()
        token = control_token_from_env({"CANDLECAST_CONTROL_TOKEN": TOKEN})
        console = build_console(params, project.root, token)
        config = TelegramConfig(allowed_chat_ids=(ALLOWED,), api_base_url=api.base_url,
                                alert_port=0, watch_interval_s=0.2, poll_timeout_s=1)
        watcher = JournalWatcher(console.trader, project.root / "cursor.json")
        watcher.skip_to_end()
        with RunningBot(ChatConsole(console, config, BOT_TOKEN, watcher)) as running:
            def replies(chat):
                return [text for c, text in api.sent if c == chat]

            # read-only commands from the allowed chat
            api.say(ALLOWED, "/status")
            api.wait_for(lambda sent: len(replies(ALLOWED)) >= 1)
            assert "state: trading" in replies(ALLOWED)[0]
            equity = trader.store.frame("ticks")["equity"].iloc[-1]
            assert f"equity {equity:,.2f}" in replies(ALLOWED)[0]
            api.say(ALLOWED, "/profit")
            api.wait_for(lambda sent: len(replies(ALLOWED)) >= 2)
            assert replies(ALLOWED)[1].startswith("PnL ")

            # a stranger: no answer, no pause, and the attempt is in the audit log
            api.say(STRANGER, "/pause")
            api.say(STRANGER, "/status")
            api.say(ALLOWED, "/positions")  # answered after the stranger's two updates
            api.wait_for(lambda sent: len(replies(ALLOWED)) >= 3)
            assert replies(STRANGER) == []
            held = replies(ALLOWED)[2]  # the open position and the policy's target for it
            assert held.startswith(f"BTC/USD {'long' if book.pos > 0 else 'short'} "
                                   f"{book.pos:.8g} @ ")
            assert (f"policy target {book.target_position:+.4f} ({book.policy_reason})"
                    in held)
            pause_file = project.root / "data" / "trading" / "PAUSE"
            assert not pause_file.exists()
            audit = [json.loads(x) for x in console.controls.audit.path.read_text().split("\n")
                     if x]
            assert [(a["action"], a["accepted"], a["client"].split()[1]) for a in audit] == [
                ("pause", False, str(STRANGER)), ("status", False, str(STRANGER))]

            # control from the allowed chat: the same pause file `candlecast trade pause` writes
            api.say(ALLOWED, "/pause")
            api.wait_for(lambda sent: any(t.startswith("paused") for t in replies(ALLOWED)))
            assert pause_file.exists()
            api.say(ALLOWED, "/resume")
            api.wait_for(lambda sent: "resumed" in replies(ALLOWED))
            assert not pause_file.exists()

            # alerts: a fill from the trader's journal ...
            before = trader.store.last_seq("fills")
            assert before >= 1  # fills journalled before the bot started are not re-sent
            while trader.store.last_seq("fills") == before:
                assert trader.run(max_ticks=1).status == "max_ticks"
            new_fills = trader.store.frame("fills").iloc[before:]
            api.wait_for(lambda sent: sum("trade_fill" in t for t in replies(ALLOWED))
                         >= len(new_fills))
            alerts = [t for t in replies(ALLOWED) if "trade_fill" in t]
            assert len(alerts) == len(new_fills)  # one per new fill, none for the old ones
            for text, price in zip(alerts, new_fills["price"], strict=True):
                assert f"@ {price:,.2f}" in text and "BTC/USD" in text

            # ... a kill, asked in the chat and carried out by the trader ...
            api.say(ALLOWED, "/kill exchange incident")
            api.wait_for(lambda sent: any(t.startswith("kill switch engaged")
                                          for t in replies(ALLOWED)))
            assert trader.run().status == "killed"
            api.wait_for(lambda sent: any("trader_killed" in t for t in replies(ALLOWED)))
            assert any("exchange incident" in t for t in replies(ALLOWED)
                       if "trader_killed" in t)

            # ... and an ops alert through the existing webhook notifier into the intake
            url = f"http://127.0.0.1:{running.bot.intake_port}/alerts/{TOKEN}"
            notifier = WebhookNotifier(url, AlertConfig(retries=0))
            assert notifier.notify("drift_detected", "drift against champion v2: rv_48")
            api.wait_for(lambda sent: any("drift_detected" in t for t in replies(ALLOWED)))
            wrong = WebhookNotifier(url.replace(TOKEN, "x" * 20), AlertConfig(retries=0))
            assert not wrong.notify("drift_detected", "forged")
        trader.store.close()

    assert replies(STRANGER) == []
    assert not any("forged" in t for _, t in api.sent)
    assert console.controls.audit.recent(1)[0]["source"] == "alert-intake"
    assert BOT_TOKEN in api.tokens  # the bot did use it ...
    assert BOT_TOKEN not in caplog.text  # ... and no log line shows it
