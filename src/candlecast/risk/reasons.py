"""Machine-readable codes carried by every risk decision.

Both enums are ``StrEnum`` so a decision serialises to plain strings (JSON, logs, MLflow tags)
and compares equal to its string value: ``Reason.STOP_LOSS == "stop_loss"``.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a decision asks the caller (backtester or live trader) to do."""

    ENTER = "enter"  # open a position of ``qty`` on ``side``
    EXIT = "exit"  # close the whole position of ``symbol``
    REJECT = "reject"  # an entry was asked for and refused
    HALT = "halt"  # trading was halted (daily loss, drawdown, kill switch)


class Reason(StrEnum):
    """Why a decision was taken. Stable strings: dashboards and the live trader match on them."""

    # entries
    SIGNAL_ENTRY = "signal_entry"
    # exits
    SIGNAL_EXIT = "signal_exit"
    STOP_LOSS = "stop_loss"  # fixed % or ATR-multiple initial stop
    TRAILING_STOP = "trailing_stop"
    CHANDELIER_STOP = "chandelier_stop"
    BREAKEVEN_STOP = "breakeven_stop"
    TAKE_PROFIT = "take_profit"
    TIME_STOP = "time_stop"
    # halts (also the reason of the exits they force)
    HALT_DAILY_LOSS = "halt_daily_loss"
    HALT_MAX_DRAWDOWN = "halt_max_drawdown"
    KILL_SWITCH = "kill_switch"
    # rejections of an entry
    REJECT_DAILY_LOSS_HALT = "reject_daily_loss_halt"
    REJECT_DRAWDOWN_HALT = "reject_drawdown_halt"
    REJECT_KILL_SWITCH = "reject_kill_switch"
    REJECT_MAX_TRADES_PER_DAY = "reject_max_trades_per_day"
    REJECT_COOLDOWN = "reject_cooldown"
    REJECT_MAX_POSITIONS = "reject_max_positions"
    REJECT_ALREADY_OPEN = "reject_already_open"
    REJECT_GROSS_EXPOSURE = "reject_gross_exposure"
    REJECT_NO_EDGE = "reject_no_edge"  # Kelly fraction <= 0
    REJECT_MISSING_VOLATILITY = "reject_missing_volatility"  # ATR / volatility NaN or <= 0
    REJECT_MISSING_PROBABILITY = "reject_missing_probability"
    REJECT_ZERO_SIZE = "reject_zero_size"
    # modifiers noted on an ENTER decision whose size was changed
    DRAWDOWN_SCALED = "drawdown_scaled"
    CAPPED_POSITION = "capped_position"
    CAPPED_GROSS_EXPOSURE = "capped_gross_exposure"
    CAPPED_KELLY = "capped_kelly"


#: exit reasons that come from a resting stop order
STOP_REASONS = frozenset(
    {Reason.STOP_LOSS, Reason.TRAILING_STOP, Reason.CHANDELIER_STOP, Reason.BREAKEVEN_STOP}
)
