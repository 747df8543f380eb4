"""The portfolio's part of `candlecast report`: the book beside its baselines, per coin, per
fold (with the ranking's rank IC and ICIR), the ranking quality of every model, DSR and PBO,
and the issue's targets checked. Reads the workspace's ``reports/portfolio/summary.json``;
:func:`tables` and :func:`targets` are pure."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from candlecast.pipeline.report import (
    _fmt,
    _markdown,
    check_rows,
    overfit_line,
    print_tables,
)

NAMES = {"portfolio": "portfolio (walk-forward)", "equal_weight": "equal-weight basket",
         "vol_target_basket": "vol-targeted basket", "btc_hold": "BTC buy-and-hold",
         "momentum_rank": "momentum-rank top-k"}
BOOK = (("total_return", "return"), ("sharpe", "Sharpe"), ("max_drawdown", "max DD"),
        ("annual_turnover", "turnover/yr"), ("costs_paid", "costs"),
        ("trade_count", "positions opened"), ("exposure", "gross"), ("net_exposure", "net"))


def summary_path(root: Path) -> Path:
    from candlecast.pipeline.portfolio_run import workspace_raw

    try:
        workspace = workspace_raw(root).get("portfolio", {}).get("workspace", "portfolio")
    except (OSError, ValueError):
        workspace = "portfolio"
    return root / workspace / "reports" / "portfolio" / "summary.json"


def load_summary(root: Path) -> dict[str, Any]:
    path = summary_path(root)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `candlecast portfolio` first")
    return json.loads(path.read_text())


def _pct(value: Any) -> str:
    return _fmt("total_return", value)


def _num(value: Any, digits: int = 2) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}"


def targets(summary: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """The issue's target on the book, net of costs: a Sharpe above the equal-weight basket's
    with a smaller maximum drawdown."""
    book, basket = summary["book"]["portfolio"], summary["book"]["equal_weight"]
    sharpe, theirs = book.get("sharpe"), basket.get("sharpe")
    dd, their_dd = book.get("max_drawdown"), basket.get("max_drawdown")
    return [
        ("portfolio Sharpe above the equal-weight basket's",
         None if sharpe is None or theirs is None else sharpe > theirs,
         f"{_num(sharpe)} vs {_num(theirs)}"),
        ("portfolio max drawdown below the equal-weight basket's",
         None if dd is None or their_dd is None else dd < their_dd,
         f"{_fmt('max_drawdown', dd)} vs {_fmt('max_drawdown', their_dd)}"),
    ]


def tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of every table of the report."""
    window = summary["window"]
    out = []
    rows = []
    order = summary.get("strategies") or list(summary["book"])
    for name in order:
        values = summary["book"][name]
        costs = values.get("costs_paid")
        cells = [_fmt("costs_paid", costs.get("total") if isinstance(costs, dict) else costs)
                 if key == "costs_paid" else _fmt("exposure", values.get(key))
                 if key in ("exposure", "net_exposure") else _fmt(key, values.get(key))
                 for key, _ in BOOK]
        rows.append([NAMES.get(name, name), *cells])
    out.append((f"Portfolio: {len(summary['universe'])} coins as one book, net of costs, out "
                f"of sample {window['start'][:10]} .. {window['end'][:10]} (folds "
                f"{', '.join(map(str, window['scored_folds']))})",
                ["strategy", *[label for _, label in BOOK]], rows))
    out.append(("The portfolio per coin (contribution to the profit, net of its costs)",
                ["coin", "contribution", "of equity", "costs", "mean weight", "held"],
                [[c["symbol"], f"{c['contribution']:,.0f}", _pct(c["contribution_pct"]),
                  f"{c['costs']:,.0f}", _num(c["mean_weight"], 3),
                  _fmt("exposure", c["held_share"])] for c in summary["coins"]]))
    fold_rows = []
    for r in summary["folds"]:
        mine, basket = r.get("portfolio") or {}, r.get("equal_weight") or {}
        fold_rows.append([
            str(r["fold"]), f"{r['start'][:10]} .. {r['end'][:10]}", str(r["config"]),
            _pct(mine.get("return")), _num(mine.get("sharpe")), _pct(basket.get("return")),
            _num(mine.get("gross")), _num(mine.get("net")), _num(mine.get("turnover"), 1),
            f"{mine.get('costs', 0):,.0f}", _num(r.get("ensemble.rank_ic"), 3),
            _num(r.get("ensemble.icir"), 3), _num(r.get("momentum_rank.rank_ic"), 3)])
    out.append(("Per scored fold, each traded with the configuration chosen on the folds "
                "before it (rank IC / ICIR of the ensemble's out-of-sample ranking that fold)",
                ["fold", "window", "configuration", "return", "Sharpe", "basket return",
                 "gross", "net", "turnover", "costs", "rank IC", "ICIR", "momentum IC"],
                fold_rows))
    ranking = [[name, _num(v.get("rank_ic"), 3), _num(v.get("icir"), 3),
                _num(v.get("ic_t_stat"), 1), f"{_num(1e4 * v['top_bottom_spread'], 1)} bps"
                if v.get("top_bottom_spread") is not None else "n/a",
                _num(v.get("turnover"), 2)]
               for name, v in sorted(summary.get("ranking", {}).items())]
    out.append(("Ranking across the coins, out of sample, pooled over the scored folds "
                "(target: the coin's forward return relative to the basket)",
                ["model@horizon", "rank IC", "ICIR", "t", "top-bottom", "turnover"], ranking))
    return out


def render(summary: dict[str, Any], markdown: bool = False) -> str | None:
    """Print the report (rich tables), or return it as Markdown."""
    overfit = overfit_line(summary["overfitting"], "(forecast x configuration) books")
    checks = check_rows(targets(summary))
    parts = tables(summary)
    if markdown:
        lines = []
        for title, header, rows in parts:
            lines += [f"**{title}**", "", _markdown(header, rows), ""]
        lines += [overfit, "", _markdown(["target", "", "numbers"], checks)]
        return "\n".join(lines)
    print_tables(parts, [overfit], checks, "Targets (docs/portfolio.md)", "portfolio",
                 width=None if sys.stdout.isatty() else 160)
    return None
