"""`candlecast report`: the backtest's results as tables a person can read.

Reads ``reports/backtest/summary.json`` (written by the ``backtest`` stage) and shows, for the
book (the series together) and per series, every strategy's net return, Sharpe, maximum
drawdown, turnover, costs, trades and exposure -- the policy beside buy-and-hold and every rule
baseline -- then the policy per scored fold, the deflated Sharpe ratio and PBO over the
configurations tried, and the issue's targets checked against the numbers. :func:`report_rows`
and :func:`targets` are pure; :func:`render` prints with rich (or Markdown for the README).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("total_return", "return"), ("sharpe", "Sharpe"), ("max_drawdown", "max DD"),
    ("annual_turnover", "turnover/yr"), ("costs_paid", "costs"), ("trade_count", "trades"),
    ("exposure", "exposure"),
)
NAMES = {"policy": "policy (walk-forward)", "buy_and_hold": "buy-and-hold",
         "vol_target_hold": "vol-targeted buy-and-hold", "sma_crossover": "SMA crossover",
         "donchian": "Donchian breakout", "tsmom": "time-series momentum"}
RULES = ("vol_target_hold", "sma_crossover", "donchian", "tsmom")


def load_summary(root: Path) -> dict[str, Any]:
    path = root / "reports" / "backtest" / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the pipeline first (make run, or "
                                "candlecast repro)")
    return json.loads(path.read_text())


def _cost(values: dict[str, Any]) -> float | None:
    costs = values.get("costs_paid")
    return costs.get("total") if isinstance(costs, dict) else costs


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if key in ("total_return", "max_drawdown", "exposure"):
        return f"{value:+.1%}" if key == "total_return" else f"{value:.1%}"
    if key in ("sharpe",):
        return f"{value:.2f}"
    if key == "annual_turnover":
        return f"{value:.0f}x"
    if key == "costs_paid":
        return f"{value:,.0f}"
    return f"{int(value)}" if key == "trade_count" else f"{value:.3g}"


def report_rows(strategies: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per strategy: the name, then :data:`COLUMNS` formatted."""
    rows = []
    for name, values in strategies.items():
        values = {**values, "costs_paid": _cost(values)}
        rows.append([NAMES.get(name, name), *[_fmt(k, values.get(k)) for k, _ in COLUMNS]])
    return rows


def targets(summary: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """The decision-layer targets, checked on the book: ``(what, met, the numbers)``."""
    book = summary["book"]
    policy, hold = book["policy"], book["buy_and_hold"]
    rules = {n: book[n]["sharpe"] for n in RULES if n in book and book[n]["sharpe"] is not None}
    best = max(rules, key=lambda n: rules[n]) if rules else None
    sharpe, dd, hold_dd = policy["sharpe"], policy["max_drawdown"], hold["max_drawdown"]
    out: list[tuple[str, bool | None, str]] = [
        ("policy Sharpe above 0", None if sharpe is None else sharpe > 0, f"{sharpe}"),
    ]
    if best is not None:
        out.append((f"policy Sharpe at least the best rule baseline's ({NAMES[best]})",
                    None if sharpe is None else sharpe >= rules[best],
                    f"{_fmt('sharpe', sharpe)} vs {_fmt('sharpe', rules[best])}"))
    out.append(("policy max drawdown at most half of buy-and-hold's",
                None if dd is None or hold_dd is None else dd <= hold_dd / 2,
                f"{_fmt('max_drawdown', dd)} vs {_fmt('max_drawdown', hold_dd)} / 2"))
    return out


def overfit_line(over: dict[str, Any], universe: str) -> str:
    """The deflated Sharpe ratio and PBO line of a report."""
    dsr = (over.get("deflated_sharpe") or {}).get("dsr")
    return (f"deflated Sharpe ratio {_fmt('x', dsr)} over {over['n_trials']} configurations "
            f"tried; PBO {_fmt('x', over.get('pbo'))} over a universe of "
            f"{over.get('universe')} {universe}")


def check_rows(checks: list[tuple[str, bool | None, str]]) -> list[list[str]]:
    return [[what, "met" if ok else "NOT met" if ok is not None else "n/a", numbers]
            for what, ok, numbers in checks]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(summary: dict[str, Any], markdown: bool = False) -> str | None:
    """Print the report (rich tables), or return it as Markdown."""
    header = ["strategy", *[label for _, label in COLUMNS]]
    window = summary["window"]
    title = (f"Book: {len(summary['series'])} series together, equal capital, net of costs, "
             f"out of sample {window['start'][:10]} .. {window['end'][:10]} "
             f"(folds {', '.join(map(str, window['scored_folds']))})")
    sections = [(title, report_rows(summary["book"]))]
    for key, strategies in summary["series"].items():
        named = {k: v for k, v in strategies.items() if k != "overfitting"}
        sections.append((key, report_rows(named)))
    folds_header = ["fold", "window", "policy", "policy return", "policy Sharpe",
                    "buy-and-hold return"]
    folds = [[str(r["fold"]), f"{r['start'][:10]} .. {r['end'][:10]}", r["policy"],
              _fmt("total_return", r["policy.return"]), _fmt("sharpe", r["policy.sharpe"]),
              _fmt("total_return", r["buy_and_hold.return"])] for r in summary["folds"]]
    overfit = overfit_line(summary["overfitting"], "(model x policy) backtests")
    checks = check_rows(targets(summary))
    if markdown:
        parts = []
        for name, rows in sections:
            parts += [f"**{name}**", "", _markdown(header, rows), ""]
        parts += ["**The policy per scored fold**", "", _markdown(folds_header, folds), "",
                  overfit, "", _markdown(["target", "", "numbers"], checks)]
        return "\n".join(parts)
    tables = [(name, header, rows) for name, rows in sections]
    tables.append(("The policy per scored fold (each chosen on the folds before it)",
                   folds_header, folds))
    print_tables(tables, [overfit], checks, "Targets (docs/policy.md)", "policy",
                 right_aligned=True)
    return None


def print_tables(tables: list[tuple[str, list[str], list[list[str]]]], notes: list[str],
                 checks: list[list[str]], checks_title: str, bold: str,
                 width: int | None = None, right_aligned: bool = False) -> None:
    """Print ``(title, header, rows)`` tables with rich (rows starting with ``bold`` in bold;
    the first table's number columns right-aligned if asked), the ``notes`` lines, then the
    targets table (met green, not met red). The policy's and the portfolio's report."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width)
    for i, (title, header, rows) in enumerate(tables):
        table = Table(title=title, title_justify="left")
        for column in header:
            numbers = right_aligned and column != header[0] and i < len(tables) - 1
            table.add_column(column, justify="right" if numbers else "left")
        for row in rows:
            table.add_row(*row, style="bold" if row[0].startswith(bold) else None)
        console.print(table)
    for note in notes:
        console.print(note)
    table = Table(title=checks_title, title_justify="left")
    for column in ("target", "", "numbers"):
        table.add_column(column)
    for row in checks:
        table.add_row(*row, style="green" if row[1] == "met" else "red")
    console.print(table)
