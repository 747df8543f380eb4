"""Chat texts: the answers to /status, /positions, /profit and the alert messages. Pure: the
console's snapshot dicts (:mod:`candlecast.console.views`) in, plain text out (no Markdown, so
no journal text can inject formatting)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_MESSAGE = 4000  # Telegram's limit is 4096 characters
ICONS = {"trade_fill": "💱", "trader_killed": "🛑", "trader_halted": "⛔", "stale_data": "⚠️",
         "drift_detected": "📉", "retrain_promoted": "🏆", "champion_promoted": "🏆",
         "retrain_rejected": "🧪", "rollback": "↩️", "service_unhealthy": "🚑"}


def _money(value: Any) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:+.2f}%"


def _fit(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def status_text(trader: Mapping[str, Any], registry: Mapping[str, Any] | None = None) -> str:
    status = trader.get("status") or {}
    if not trader.get("available"):
        return _fit(f"state: {status.get('state', 'no state')}\n{trader.get('reason', '')}")
    s = trader.get("summary") or {}
    open_positions = [p for p in trader.get("positions", []) if p["qty"]]
    lines = [
        f"state: {status['state']}" + (f" ({status['kill_reason']})" if status.get("killed")
                                       else ""),
        f"{trader['mode']} {trader['exchange']} {', '.join(trader['symbols'])} "
        f"{trader['timeframe']}",
        f"equity {_money(s.get('equity'))} ({_pct(s.get('return'))}), "
        f"drawdown {_pct(s.get('drawdown'))}",
        f"last candle {status.get('last_candle') or '—'}, {trader.get('candles_processed')} "
        "processed",
        f"open positions {len(open_positions)}, working orders {len(trader.get('orders', []))}",
    ]
    if status.get("signal_failures"):
        lines.append(f"no fresh signal for {status['signal_failures']} candle(s)")
    if registry and registry.get("available") and registry.get("champion"):
        lines.append(f"champion {registry['model']} v{registry['champion']['version']}")
    return _fit("\n".join(lines))


def positions_text(trader: Mapping[str, Any]) -> str:
    if not trader.get("available"):
        return _fit(trader.get("reason", "no trader state"))
    rows = [p for p in trader.get("positions", []) if p["qty"]]
    if not rows:
        return "no open positions"
    lines = []
    for p in rows:
        line = (f"{p['symbol']} {p['side']} {p['qty']:.8g} @ {_money(p['entry'])}, stop "
                f"{_money(p['stop'])}, last {_money(p['last_close'])}, unrealized "
                f"{_money(p['unrealized_pnl'])} ({_pct(p['unrealized_pct'])})")
        if p.get("target_position") is not None:  # the policy's target, fraction of equity
            line += f"; policy target {p['target_position']:+.4f}"
            if p.get("policy_reason"):
                line += f" ({p['policy_reason']})"
        lines.append(line)
    return _fit("\n".join(lines))


def profit_text(trader: Mapping[str, Any]) -> str:
    if not trader.get("available"):
        return _fit(trader.get("reason", "no trader state"))
    p = trader.get("profit") or {}
    return _fit("\n".join([
        f"PnL {_money(p.get('pnl'))} ({_pct(p.get('return'))}) since the first candle",
        f"realized {_money(p.get('realized_pnl'))}, unrealized {_money(p.get('unrealized_pnl'))}",
        f"fees {_money(p.get('fees'))}, {p.get('fills', 0)} fills, "
        f"max drawdown {_pct(p.get('max_drawdown'))}",
    ]))


def alert_text(payload: Mapping[str, Any]) -> str:
    """An ops alert payload (webhook or journal) as one chat message."""
    event = str(payload.get("event", "alert"))
    return _fit(f"{ICONS.get(event, '🔔')} {event}: {payload.get('message', '')}")


COMMAND_HELP = {
    "status": "state, equity, drawdown, last candle",
    "positions": "open positions: entry, stop, unrealized PnL, policy target",
    "profit": "PnL since the first candle",
    "pause": "ignore signals (stops stay enforced)",
    "resume": "trade again after a pause",
    "kill": "<reason>: cancel orders, flatten, stop",
}
HELP = "\n".join(f"/{name} – {text}" for name, text in COMMAND_HELP.items())
