"""Alias history and rollback on a real (SQLite) MLflow registry; the webhook notifier
against a local HTTP receiver on 127.0.0.1; the trader's halt alert."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from candlecast.monitoring.alerts import (
    AlertConfig,
    NullNotifier,
    WebhookNotifier,
    check_service,
    notifier_from_env,
)

SECRET = "s3cr3t-token-abc"


class Receiver:
    """A local webhook receiver: answers the scripted status codes in order (then 200)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                outer.paths.append(self.path)
                code = outer.codes.pop(0) if outer.codes else 200
                if raw:
                    outer.bodies.append(json.loads(raw))
                body = b'{"ok": true}' if self.path != "/metadata" else json.dumps(
                    {"model_version": None, "load_error": "no champion"}).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = _answer

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(codes=None) -> Receiver:
        made.append(Receiver(codes))
        return made[-1]

    yield make
    for r in made:
        r.close()


FAST = AlertConfig(retries=3, backoff_s=0.0, timeout_s=2.0)


def test_webhook_retries_transient_failures_and_never_logs_the_url(receiver, caplog):
    hook = receiver([503, 500])
    notifier = WebhookNotifier(f"{hook.url}/hook/{SECRET}", FAST)
    with caplog.at_level(logging.DEBUG):
        assert notifier.notify("drift_detected", "drift!", drift_share=0.6, report="x.html")
    assert len(hook.paths) == 3  # two failures, then delivered
    body = hook.bodies[-1]
    assert body["event"] == "drift_detected" and body["source"] == "candlecast"
    assert body["details"] == {"drift_share": 0.6, "report": "x.html"}
    assert SECRET not in caplog.text and SECRET not in repr(notifier)


def test_webhook_gives_up_without_raising(receiver, caplog):
    refused = receiver([400])
    assert not WebhookNotifier(refused.url, FAST).notify("retrain_rejected", "no")
    assert len(refused.paths) == 1  # a 4xx is not retried
    down = WebhookNotifier("http://127.0.0.1:9/hook", FAST)  # nothing listens on port 9
    assert not down.notify("retrain_promoted", "yes")
    assert not WebhookNotifier(refused.url, FAST).notify("not_an_event", "x")


def test_notifier_from_env():
    assert isinstance(notifier_from_env({}), NullNotifier)
    assert isinstance(notifier_from_env({"CANDLECAST_ALERT_WEBHOOK": "ftp://x"}), NullNotifier)
    assert isinstance(notifier_from_env({"CANDLECAST_ALERT_WEBHOOK": "http://127.0.0.1:1/h"}),
                      WebhookNotifier)


def test_an_unhealthy_service_is_alerted(receiver):
    service = receiver([503])  # /readyz answers 503, /metadata 200 with the load error
    hook = receiver()
    status = check_service(service.url, WebhookNotifier(hook.url, FAST))
    assert not status["ready"] and status["load_error"] == "no champion"
    assert [b["event"] for b in hook.bodies] == ["service_unhealthy"]
    assert "no champion" in hook.bodies[0]["message"]


def test_trader_halt_is_alerted_once_per_halt(tmp_path, btc_30m, receiver):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trading"))
    from trading_helpers import build_paper_trader, make_script, replay_slice

    from candlecast.features import FeatureConfig
    from candlecast.risk import RiskConfig
    from candlecast.risk.config import LimitsConfig, SizingConfig

    hook = receiver()
    risk = RiskConfig(sizing=SizingConfig(method="fixed_fractional", risk_per_trade=0.05),
                      limits=LimitsConfig(max_daily_loss=0.01, max_drawdown=0.05))
    full, replay, feats = replay_slice(btc_30m, 6000, 600, FeatureConfig())
    script = make_script(replay, feats, btc_30m, 6000, noise=4.0, horizon=4, entry_margin=0.5,
                         allow_short=True, vol_target=None)
    trader, _, _, store = build_paper_trader(tmp_path, full, replay, script, risk=risk)
    trader.notifier = WebhookNotifier(hook.url, FAST)
    trader.run()
    decisions = store.frame("decisions")
    halts = decisions[decisions["action"].str.upper() == "HALT"]
    assert len(halts) >= 1
    assert len(hook.bodies) == len(halts)
    assert {b["event"] for b in hook.bodies} == {"trader_halted"}
    assert set(b["details"]["reason"] for b in hook.bodies) == set(halts["reason"])


# ------------------------------------------------------------------ alias history, rollback
@pytest.fixture
def registry(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns.db'}")
    client = MlflowClient()
    client.create_registered_model("ens")
    source = tmp_path / "model"
    source.mkdir()
    for _ in range(3):
        client.create_model_version("ens", str(source))
    return client


def test_alias_history_and_rollback(registry):
    from candlecast.tracking.aliases import (
        alias_version,
        champion_history,
        mark_challenger,
        move_champion,
        rollback,
    )

    assert move_champion(registry, "ens", "1", "first", "test") is None
    mark_challenger(registry, "ens", "2")
    assert move_champion(registry, "ens", "2", "better", "test") == "1"
    assert alias_version(registry, "ens", "challenger") is None  # promoted: no longer one
    assert move_champion(registry, "ens", "3", "better again", "test") == "2"
    v3 = registry.get_model_version("ens", "3").tags
    assert v3["ops.previous_champion"] == "2" and v3["ops.champion_reason"] == "better again"
    assert "ops.champion_until" in registry.get_model_version("ens", "2").tags

    assert rollback(registry, "ens", "bad live pnl") == {"champion": "2", "rolled_back": "3"}
    assert alias_version(registry, "ens", "champion") == "2"
    assert registry.get_model_version("ens", "3").tags["ops.rolled_back_reason"] == "bad live pnl"
    assert rollback(registry, "ens", "again")["champion"] == "1"  # walks further back
    with pytest.raises(ValueError, match="no recorded previous champion"):
        rollback(registry, "ens", "once more")
    actions = [(h["action"], h["version"]) for h in champion_history(registry, "ens")]
    assert actions == [("promote", "1"), ("promote", "2"), ("promote", "3"),
                       ("rollback", "2"), ("rollback", "1")]
