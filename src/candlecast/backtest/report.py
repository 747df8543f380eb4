"""The backtest report: pure assembly (:func:`build_report`) and the file-writing edge
(:func:`write_report`).

A report holds a JSON-safe metrics dict (for a DVC metrics file and MLflow), equity and
drawdown curve tables (for DVC plots: ``step``, ``timestamp`` and one column per strategy:
the strategy, buy-and-hold, baselines), PNG figures, the primary strategy's trades, and one
self-contained HTML page (figures embedded as base64) with a lineage block whose values the
caller passes in.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest import metrics as m
from candlecast.backtest.overfitting import (
    deflated_sharpe_ratio,
    probability_of_backtest_overfitting,
)
from candlecast.backtest.plots import report_png
from candlecast.backtest.result import BacktestResult
from candlecast.backtest.summary import equity_with_start, json_safe, summarize


@dataclass(frozen=True)
class Lineage:
    """Where a report's numbers come from; every value is given by the caller."""

    data_version: str
    git_commit: str
    model_run_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"data_version": self.data_version, "git_commit": self.git_commit,
                "model_run_id": self.model_run_id, "params": json_safe(dict(self.params))}


@dataclass
class BacktestReport:
    metrics: dict[str, Any]
    equity_curves: pd.DataFrame
    drawdown_curves: pd.DataFrame
    trades: pd.DataFrame
    decision_counts: pd.DataFrame
    figures: dict[str, bytes]
    html: str


def _curve_table(results: Sequence[BacktestResult], values: list[np.ndarray],
                 max_points: int) -> pd.DataFrame:
    n = len(values[0])
    step = max(1, -(-n // max_points))
    rows = np.arange(0, n, step)
    if rows[-1] != n - 1:
        rows = np.append(rows, n - 1)
    table = pd.DataFrame({"step": rows,
                          "timestamp": results[0].timestamps[rows].strftime("%Y-%m-%dT%H:%M:%SZ")})
    for result, curve in zip(results, values, strict=True):
        table[result.name] = curve[rows]
    return table


def build_report(
    results: Sequence[BacktestResult],
    lineage: Lineage,
    *,
    primary: str | None = None,
    n_trials: int = 1,
    trial_sharpes: np.ndarray | None = None,
    trial_returns: np.ndarray | None = None,
    pbo_blocks: int = 16,
    bootstrap_samples: int = 200,
    max_curve_points: int = 5000,
    seed: int = 0,
    title: str = "candlecast backtest",
) -> BacktestReport:
    """Assemble the report of ``results`` (same candles; names unique; the first, or
    ``primary``, is the strategy under test, the others e.g. buy-and-hold and baselines).

    ``n_trials`` is the real number of configurations tried to arrive at the primary strategy
    (Optuna trials x models x parameter sets): it deflates the Sharpe ratio. ``trial_sharpes``
    (per-period SRs of those trials) sharpen the DSR; ``trial_returns`` (bars x trials) give
    the PBO. Bootstrap confidence intervals are computed for the primary strategy only.
    Nothing is written: see :func:`write_report`.
    """
    if not results:
        raise ValueError("build_report needs at least one backtest result")
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"backtest result names must be unique, got {names}")
    if any(not r.timestamps.equals(results[0].timestamps) for r in results[1:]):
        raise ValueError("all results in one report must cover the same candles")
    primary = primary if primary is not None else names[0]
    if primary not in names:
        raise ValueError(f"primary {primary!r} is not one of the results {names}")
    main = results[names.index(primary)]

    strategies = {r.name: summarize(r, bootstrap_samples if r is main else 0, seed=seed)
                  for r in results}
    returns = m.simple_returns(equity_with_start(main))
    overfit: dict[str, Any] = {"n_trials": n_trials}
    if len(returns) >= 3 and np.std(returns) > 0:
        overfit["deflated_sharpe"] = deflated_sharpe_ratio(returns, n_trials,
                                                           trial_sharpes=trial_sharpes)
    if trial_returns is not None:
        pbo = probability_of_backtest_overfitting(trial_returns, pbo_blocks)
        overfit["pbo"] = pbo["pbo"]
        overfit["pbo_splits"] = pbo["n_splits"]
    metrics = json_safe({"primary": primary, "strategies": strategies,
                         "overfitting": overfit, "lineage": lineage.to_dict()})

    equity_curves = _curve_table(results, [r.equity for r in results], max_curve_points)
    drawdown_curves = _curve_table(results, [m.drawdown_curve(r.equity) for r in results],
                                   max_curve_points)
    figures = {"equity_drawdown.png": report_png(equity_curves, drawdown_curves, primary)}
    decisions = main.decisions
    counts = (decisions.groupby(["action", "reason"]).size().rename("count").reset_index()
              if len(decisions) else pd.DataFrame(columns=["action", "reason", "count"]))
    page = render_html(title, metrics, figures, main.trades, counts)
    return BacktestReport(metrics, equity_curves, drawdown_curves, main.trades, counts, figures,
                          page)


_KEY_METRICS = ("final_equity", "total_return", "annualized_return", "annualized_volatility",
                "sharpe", "sortino", "calmar", "max_drawdown", "max_drawdown_duration_bars",
                "trade_count", "win_rate", "profit_factor", "avg_win", "avg_loss", "expectancy",
                "exposure", "annual_turnover", "risk_of_ruin")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value, default=str))
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(title: str, metrics: Mapping[str, Any], figures: Mapping[str, bytes],
                trades: pd.DataFrame, decision_counts: pd.DataFrame,
                max_trade_rows: int = 300) -> str:
    """One self-contained HTML page (no external assets)."""
    strategies = metrics["strategies"]
    names = list(strategies)
    metric_rows = [[key, *[strategies[n].get(key) for n in names]] for key in _KEY_METRICS]
    metric_rows.append(["costs_paid (total)",
                        *[strategies[n]["costs_paid"]["total"] for n in names]])
    for key in ("total_return", "max_drawdown"):
        metric_rows.append([f"{key} 95% CI (block bootstrap)",
                            *[strategies[n].get("bootstrap_95", {}).get(key) for n in names]])
    lineage = metrics["lineage"]
    lineage_rows = [["data version", lineage["data_version"]],
                    ["git commit", lineage["git_commit"]],
                    ["model run id", lineage["model_run_id"]],
                    ["params", lineage["params"]]]
    overfit = metrics["overfitting"]
    dsr = overfit.get("deflated_sharpe") or {}
    overfit_rows = [["trials (N)", overfit.get("n_trials")],
                    ["deflated Sharpe ratio", dsr.get("dsr")],
                    ["per-bar Sharpe / threshold", f"{_fmt(dsr.get('sharpe'))} / "
                                                  f"{_fmt(dsr.get('sharpe_threshold'))}"],
                    ["probability of backtest overfitting", overfit.get("pbo")]]
    images = "".join(
        f'<img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}"/>' for name, png in figures.items())
    shown = trades.tail(max_trade_rows)
    trade_cols = ["trade_id", "side", "entry_time", "exit_time", "bars_held", "entry_price",
                  "exit_price", "pnl", "return", "fees", "slippage", "exit_reason"]
    shown = shown.assign(entry_time=shown["entry_time"].astype(str),
                         exit_time=shown["exit_time"].astype(str))
    trade_rows = shown[trade_cols].to_numpy(dtype=object).tolist()
    note = (f"<p>Last {len(shown)} of {len(trades)} trades.</p>" if len(trades) > len(shown)
            else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
.lineage td {{ text-align: left; font-family: monospace; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Primary strategy: <b>{html.escape(str(metrics["primary"]))}</b>. All figures are net of
fees, spread, slippage, market impact and funding; orders decided at a bar's close fill at the
next bar's open.</p>
<h2>Lineage</h2><div class="lineage">{_table(["", "value"], lineage_rows)}</div>
<h2>Equity and drawdown</h2>{images}
<h2>Metrics</h2>{_table(["metric", *names], metric_rows)}
<h2>Overfitting</h2>{_table(["statistic", "value"], overfit_rows)}
<h2>Risk decisions</h2>{_table(["action", "reason", "count"], decision_counts.values.tolist())}
<h2>Trades</h2>{note}{_table(trade_cols, trade_rows)}
</body></html>
"""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_report(report: BacktestReport, out_dir: str | Path) -> dict[str, Path]:
    """Write the report's files into ``out_dir`` (created if needed), each atomically:
    ``metrics.json``, ``equity.csv``, ``drawdown.csv``, ``trades.csv``, ``decisions.csv``,
    ``equity_drawdown.png``, ``report.html``. Returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics.json": json.dumps(report.metrics, indent=2, sort_keys=True).encode(),
        "equity.csv": report.equity_curves.to_csv(index=False).encode(),
        "drawdown.csv": report.drawdown_curves.to_csv(index=False).encode(),
        "trades.csv": report.trades.to_csv(index=False).encode(),
        "decisions.csv": report.decision_counts.to_csv(index=False).encode(),
        **report.figures,
        "report.html": report.html.encode(),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = out / name
        _atomic_write(paths[name], data)
    return paths
