"""`candlecast report`: the tables and the targets from a backtest summary (pure parts)."""

from __future__ import annotations

from candlecast.pipeline.report import report_rows, targets


def _book(policy_sharpe, policy_dd, rule_sharpe=0.5, hold_dd=0.5):
    row = {"total_return": 0.1, "sharpe": 1.0, "max_drawdown": 0.2, "annual_turnover": 10.0,
           "costs_paid": {"total": 123.0}, "trade_count": 7, "exposure": 0.4}
    return {"book": {
        "policy": {**row, "sharpe": policy_sharpe, "max_drawdown": policy_dd},
        "buy_and_hold": {**row, "max_drawdown": hold_dd},
        "vol_target_hold": {**row, "sharpe": rule_sharpe},
        "sma_crossover": {**row, "sharpe": rule_sharpe - 0.2},
        "donchian": {**row, "sharpe": None},
        "tsmom": {**row, "sharpe": -1.0},
    }}


def test_rows_are_formatted_per_strategy():
    rows = report_rows(_book(0.3, 0.1)["book"])
    assert rows[0][0] == "policy (walk-forward)"
    assert rows[0][1:] == ["+10.0%", "0.30", "10.0%", "10x", "123", "7", "40.0%"]
    assert rows[4][2] == "n/a"  # an unknown Sharpe is shown as such


def test_targets_are_checked_against_the_numbers():
    met = {what: ok for what, ok, _ in targets(_book(0.8, 0.2, rule_sharpe=0.6, hold_dd=0.5))}
    assert list(met.values()) == [True, True, True]
    missed = {what: ok for what, ok, _ in targets(_book(-0.1, 0.3, rule_sharpe=0.6,
                                                        hold_dd=0.5))}
    assert list(missed.values()) == [False, False, False]
    names = [what for what, _, _ in targets(_book(0.8, 0.2))]
    assert "vol-targeted buy-and-hold" in names[1]  # the best rule baseline by Sharpe
