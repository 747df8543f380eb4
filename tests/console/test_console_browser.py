"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium; never a downloaded browser) against ``candlecast
dashboard``'s app over the state of a real paper replay (the CLI's ``build_trader``, real BTC
candles, the signal service's HTTP contract), a real MLflow registry and drift verdict files.

The signal service answers a real policy's TARGET position for the position and bars held the
trader reports (the target contract); the backtest curve beside it comes from ``run_targets``
with the same policy on the same forecasts.

It checks what a person would: the equity plot holds the replay's points, the positions table
says what ``candlecast trade status`` says (position, and the policy's target and reason per
series), the page refreshes itself, the pause button refuses without the token (and the refusal
is in the audit log on the page) and with it pauses the trader -- the next candles decide and
open nothing, where the same candles unpaused open a position.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from console_helpers import (
    STEP_NS,
    TOKEN,
    ServerThread,
    console_script,
    replay_project,
    write_backtest_curve,
    write_ops_outputs,
    write_registry,
)
from trading_helpers import FakeSignalService
from typer.testing import CliRunner

from candlecast.common.auth import control_token_from_env
from candlecast.console.app import create_app
from candlecast.console.state import build_console
from candlecast.trading.cli import trade_app

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs the Debian packages chromium "
                       "and chromium-driver (apt-get install chromium chromium-driver)"),
]
PAUSED_TICKS = 40


@pytest.fixture
def browser(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,2400",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=DRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def cells(driver, table_id):
    return driver.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)].map(tr => "
        "Object.fromEntries([...tr.querySelectorAll('td')].map(td => "
        "[td.dataset.key, td.textContent])))", table_id)


def number(text):
    return float(text.replace(",", ""))


def decisions_after(store, ts_ns, *actions):
    decisions = store.frame("decisions")
    return decisions[(decisions["ts"] > ts_ns) & decisions["action"].isin(actions)]


def entries_after(store, ts_ns):
    return decisions_after(store, ts_ns, "enter")


def test_dashboard_in_chromium(tmp_path, btc_30m, browser):
    with FakeSignalService(console_script(btc_30m), STEP_NS) as service:
        project = replay_project(tmp_path / "a", btc_30m, service)
        write_registry(project.root)
        write_ops_outputs(project.root)
        write_backtest_curve(project)
        trader = project.trader()
        book = trader.books["BTC/USD"]
        while not (len(trader.store.frame("ticks")) >= 30 and book.pos != 0.0
                   and book.target_position != 0.0):
            assert trader.run(max_ticks=1).status == "max_ticks"
        ticks = trader.store.frame("ticks")
        paused_at = int(ticks["ts"].iloc[-1])

        status = CliRunner().invoke(trade_app, ["status", "--root", str(project.root)])
        assert status.exit_code == 0, status.output
        report = json.loads(status.output)
        positions, targets = report["positions"], report["targets"]
        assert positions["BTC/USD"] == book.pos != 0.0
        assert targets["BTC/USD"]["target_position"] == book.target_position != 0.0
        assert targets["BTC/USD"]["policy_reason"] == book.policy_reason != ""
        last_bar = trader.store.frame("bars").iloc[-1]

        console = build_console(project.params(), project.root,
                                control_token_from_env({"CANDLECAST_CONTROL_TOKEN": TOKEN}))
        with ServerThread(create_app(console)) as server:
            browser.get(server.url + "/")
            wait(lambda: int(browser.execute_script("return document.body.dataset.rendered"
                                                    " || 0")) >= 1, what="the first render")
            browser.execute_script("window.__sameDocument = 42")

            # the equity plot: exactly the replay's per-candle equity, drawn
            x, y = browser.execute_script(
                "const d = document.getElementById('equity-plot').data; return [d[0].x, d[0].y]")
            assert len(y) == len(ticks)
            np.testing.assert_array_equal(np.asarray(y), ticks["equity"].to_numpy())
            assert x[0].startswith("2018-02-03T00:00:00")
            path = browser.execute_script(
                "return document.querySelector('#equity-plot .scatterlayer .trace path')"
                ".getAttribute('d')")
            assert path.count("L") == len(ticks) - 1  # one line segment per candle

            # the positions table says what `candlecast trade status` says
            rows = cells(browser, "positions-table")
            assert {r["symbol"]: number(r["qty"]) for r in rows} == {
                s: round(q, 8) for s, q in positions.items()}
            risk = trader.risk_state.positions["BTC/USD"]
            assert number(rows[0]["entry"]) == pytest.approx(risk.entry_price, abs=0.006)
            assert number(rows[0]["stop"]) == pytest.approx(risk.stop, abs=0.006)
            # ... and the policy's target (fraction of equity) and its reason
            assert number(rows[0]["target_position"]) == pytest.approx(
                targets["BTC/USD"]["target_position"], abs=5e-5)
            assert rows[0]["policy_reason"] == targets["BTC/USD"]["policy_reason"]

            # the signals table: the last candle's answer, its target and policy reason
            (signal,) = cells(browser, "signals-table")
            assert signal["status"] == "ok" == last_bar["signal_status"]
            assert number(signal["target_position"]) == pytest.approx(
                last_bar["target_position"], abs=5e-5)
            assert signal["policy_reason"] == last_bar["policy_reason"] != ""
            assert signal["fresh_policy_reason"] == last_bar["policy_reason"]
            headers = browser.find_element("id", "signals-table").text
            assert "target" in headers and "policy reason" in headers

            # registry, ops and the backtest comparison are on the page
            champion = browser.find_element("id", "champion-table").text
            assert "v2" in champion and "paired bootstrap" in champion
            assert len(cells(browser, "history-table")) == 2
            assert len(cells(browser, "drift-table")) == 2
            note = browser.find_element("id", "comparison-note").text
            assert "difference 0.00%" in note  # paper == backtest on the same candles
            assert "largest gap 0.00%" in note  # ... at every candle so far

            # no token, then a wrong one: refused, nothing written, both in the audit log
            browser.find_element("id", "btn-pause").click()
            result = browser.find_element("id", "control-result")
            wait(lambda: "refused" in result.text, what="the refusal")
            assert "no control token" in result.text
            browser.find_element("id", "token").send_keys("not-the-token-at-all-000")
            browser.find_element("id", "btn-pause").click()
            wait(lambda: "invalid control token" in result.text, what="the second refusal")
            assert not (project.root / "data" / "trading" / "PAUSE").exists()
            wait(lambda: len(cells(browser, "audit-table")) == 2, what="the audit rows")
            audit = [json.loads(line) for line in console.controls.audit.path.read_text()
                     .splitlines()]
            assert [a["accepted"] for a in audit] == [False, False]
            assert TOKEN not in console.controls.audit.path.read_text()

            # with the token: paused
            token_box = browser.find_element("id", "token")
            token_box.clear()
            token_box.send_keys(TOKEN)
            browser.find_element("id", "btn-pause").click()
            wait(lambda: result.text.startswith("paused"), what="the pause")
            assert (project.root / "data" / "trading" / "PAUSE").exists()

            # the trader's next candles open nothing; the page follows without a reload
            asked = len(service.requests)
            assert trader.run(max_ticks=PAUSED_TICKS).status == "max_ticks"
            assert len(service.requests) == asked  # the service was not asked while paused
            bars = trader.store.frame("bars")
            paused_bars = bars[bars["ts"] > paused_at]
            assert len(paused_bars) == PAUSED_TICKS
            assert (paused_bars["signal_status"] == "paused").all()
            assert paused_bars["target_position"].isna().all()  # no target journalled
            assert decisions_after(trader.store, paused_at, "enter", "target").empty
            orders = trader.store.frame("orders")
            assert not orders[orders["created_ts"] > paused_at]["reason"].str.startswith(
                "target").any()  # only the risk engine's exits may trade while paused
            badge = browser.find_element("id", "badge")
            wait(lambda: badge.text == "paused", what="the paused badge")
            wait(lambda: len(browser.execute_script(
                "return document.getElementById('equity-plot').data[0].y")) ==
                len(ticks) + PAUSED_TICKS, what="the new candles on the plot")
            assert browser.execute_script("return window.__sameDocument") == 42

            shot = tmp_path / "dashboard.png"
            assert browser.save_screenshot(str(shot))
        trader.store.close()

        # the same candles, not paused, do open a position (so the pause made the difference)
        control = replay_project(tmp_path / "b", btc_30m, service)
        unpaused = control.trader()
        unpaused.run(max_ticks=len(ticks) + PAUSED_TICKS)
        assert not entries_after(unpaused.store, paused_at).empty
        assert not decisions_after(unpaused.store, paused_at, "target").empty
        unpaused.store.close()

    image = _pixels(shot)
    assert image.shape[0] > 1000 and image.shape[1] >= 1300
    assert image.std() > 0.05  # not one flat colour
    assert len(np.unique(image.reshape(-1, image.shape[-1])[::7], axis=0)) > 200


def _pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(str(path))
