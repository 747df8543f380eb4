"""The report figure as PNG bytes (matplotlib's Agg canvas, no pyplot global state).

One figure, two panels sharing the time axis (equity on a log scale above, drawdown below),
rendered once: drawing is most of a report's time, so the figure keeps few text elements and
fixed margins instead of ``tight_layout`` (which draws twice).
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter


def _lines(ax, curves: pd.DataFrame, primary: str | None) -> None:  # type: ignore[no-untyped-def]
    x = pd.to_datetime(curves["timestamp"], utc=True).dt.tz_localize(None)
    for column in curves.columns:
        if column in ("step", "timestamp"):
            continue
        ax.plot(x, curves[column].to_numpy(), label=column,
                linewidth=1.5 if column == primary else 0.9)
    ax.grid(alpha=0.3)


def report_png(equity_curves: pd.DataFrame, drawdown_curves: pd.DataFrame,
               primary: str | None = None) -> bytes:
    """Equity (log scale) and drawdown of every strategy column, as one PNG."""
    fig = Figure(figsize=(10, 6), dpi=80)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    _lines(top, equity_curves, primary)
    top.set_yscale("log")
    top.yaxis.set_minor_formatter(NullFormatter())  # log axes label minor ticks: slow, noisy
    top.set_ylabel("equity (net of costs)")
    top.legend(loc="upper left", fontsize=8)
    _lines(bottom, drawdown_curves, primary)
    bottom.set_ylabel("drawdown")
    bottom.invert_yaxis()
    locator = AutoDateLocator(maxticks=8)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.97, bottom=0.08, hspace=0.06)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def exposure_png(exposure: pd.DataFrame) -> bytes:
    """A book's weights per coin (stacked, long above zero, short below) with its gross and
    net exposure, over time (``timestamp``, ``gross``, ``net`` and one column per coin)."""
    fig = Figure(figsize=(10, 4), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = pd.to_datetime(exposure["timestamp"], utc=True).dt.tz_localize(None)
    coins = [c for c in exposure.columns if c not in ("step", "timestamp", "gross", "net")]
    values = exposure[coins].to_numpy(dtype=float)
    ax.stackplot(x, values.clip(min=0).T, labels=coins, alpha=0.6)
    ax.stackplot(x, values.clip(max=0).T, alpha=0.6)
    ax.plot(x, exposure["gross"].to_numpy(), color="black", linewidth=1.0, label="gross")
    ax.plot(x, exposure["net"].to_numpy(), color="grey", linewidth=1.0, linestyle="--",
            label="net")
    ax.set_ylabel("weight (fraction of equity)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    locator = AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, bottom=0.12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
