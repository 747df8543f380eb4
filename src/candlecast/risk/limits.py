"""Account limits: pure functions over a :class:`RiskState` and a few numbers.

Day bookkeeping is lazy: a state remembers the UTC day it last saw; when a later day is seen,
the day starts at ``state.last_equity`` (the equity at the last close or fill seen). Because a
flat account's equity does not move, a caller may skip bars where it is flat and nothing fills
(the backtester does) without changing any decision.
"""

from __future__ import annotations

from candlecast.risk.config import LimitsConfig
from candlecast.risk.reasons import Reason
from candlecast.risk.state import RiskState


def drawdown(peak_equity: float, equity: float) -> float:
    """Fractional drawdown from peak (0 at or above peak)."""
    if peak_equity <= 0:
        return 0.0
    return max(0.0, 1.0 - equity / peak_equity)


def drawdown_scale(cfg: LimitsConfig, dd: float) -> float:
    """Size multiplier: 1 up to ``drawdown_scale_start``, linear down to ``drawdown_scale_floor``
    at ``drawdown_scale_end``, the floor beyond."""
    start, end = cfg.drawdown_scale_start, cfg.drawdown_scale_end
    if start is None or end is None or dd <= start:
        return 1.0
    if dd >= end:
        return cfg.drawdown_scale_floor
    return 1.0 - (1.0 - cfg.drawdown_scale_floor) * (dd - start) / (end - start)


def day_start_equity(state: RiskState, day: int) -> float:
    """Equity at the start of UTC ``day`` as known to ``state``."""
    return state.day_start_equity if day == state.day else state.last_equity


def trades_on(state: RiskState, day: int) -> int:
    return state.trades_today if day == state.day else 0


def entry_block(
    cfg: LimitsConfig, state: RiskState, symbol: str, day: int, bar: int, replacing: bool = False
) -> Reason | None:
    """Why a new entry in ``symbol`` must be refused now, or ``None``. Checked in a fixed order:
    kill switch, drawdown halt, daily-loss halt, already open, max positions, trades per day,
    cooldown. ``replacing``: the symbol's open position is being closed by the same order (a
    reversal), so it counts neither as already open nor toward the position limit."""
    if state.kill_switch:
        return Reason.REJECT_KILL_SWITCH
    if state.drawdown_halted:
        return Reason.REJECT_DRAWDOWN_HALT
    if state.halted_until_day >= day:
        return Reason.REJECT_DAILY_LOSS_HALT
    is_open = symbol in state.positions
    if is_open and not replacing:
        return Reason.REJECT_ALREADY_OPEN
    if len(state.positions) - (is_open and replacing) >= cfg.max_concurrent_positions:
        return Reason.REJECT_MAX_POSITIONS
    if cfg.max_trades_per_day is not None and trades_on(state, day) >= cfg.max_trades_per_day:
        return Reason.REJECT_MAX_TRADES_PER_DAY
    if bar < state.cooldown_until_bar:
        return Reason.REJECT_COOLDOWN
    return None


def daily_loss_breached(cfg: LimitsConfig, start_equity: float, equity: float) -> bool:
    return cfg.max_daily_loss is not None and equity <= start_equity * (1.0 - cfg.max_daily_loss)


def drawdown_breached(cfg: LimitsConfig, peak_equity: float, equity: float) -> bool:
    return cfg.max_drawdown is not None and equity <= peak_equity * (1.0 - cfg.max_drawdown)
