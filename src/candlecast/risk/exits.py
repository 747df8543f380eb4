"""Exit rules: pure scalar functions over one position's levels.

Conventions: ``side`` is +1 (long) or -1 (short); a NaN level means "no such order". Levels are
computed at a bar's close and rest during the next bar; :func:`intrabar_exit` says whether and
where a bar hits them, assuming the STOP came first when a bar touches both stop and target
(the conservative reading of an OHLC bar, which cannot tell the order of its extremes).
"""

from __future__ import annotations

import math

from candlecast.risk.config import ExitConfig
from candlecast.risk.reasons import Reason

NAN = math.nan
# enum members bound once: reading ``Reason.X`` costs ~10x a module global in CPython 3.11
_BREAKEVEN, _TRAILING, _CHANDELIER = (Reason.BREAKEVEN_STOP, Reason.TRAILING_STOP,
                                      Reason.CHANDELIER_STOP)


def initial_stop(cfg: ExitConfig, side: int, entry: float, atr: float) -> float:
    """The most protective of the fixed-% and ATR-multiple stops, NaN if neither applies.

    An ATR stop with a NaN/non-positive ATR does not apply (the sizing step rejects the entry
    when it needs that stop).
    """
    stop = NAN
    if cfg.stop_loss_pct is not None:
        stop = entry * (1.0 - side * cfg.stop_loss_pct)
    if cfg.stop_atr_multiple is not None and atr > 0:
        atr_stop = entry - side * cfg.stop_atr_multiple * atr
        if math.isnan(stop) or side * (atr_stop - stop) > 0:
            stop = atr_stop
    return stop


def take_profit(cfg: ExitConfig, side: int, entry: float, initial_risk: float) -> float:
    """The nearer of the fixed-% and R-multiple targets, NaN if neither applies."""
    target = NAN
    if cfg.take_profit_pct is not None:
        target = entry * (1.0 + side * cfg.take_profit_pct)
    if cfg.take_profit_r is not None and initial_risk > 0:
        r_target = entry + side * cfg.take_profit_r * initial_risk
        if math.isnan(target) or side * (target - r_target) > 0:
            target = r_target
    return target


def check_stop_side(side: int, entry: float, stop: float) -> None:
    """Raise if an explicitly given stop is on the wrong side of the entry (bad input)."""
    if not math.isnan(stop) and side * (entry - stop) <= 0:
        where = "below" if side > 0 else "above"
        raise ValueError(
            f"stop {stop} must be {where} the entry price {entry} for a "
            f"{'long' if side > 0 else 'short'} position"
        )


def trail(
    cfg: ExitConfig,
    side: int,
    entry: float,
    initial_risk: float,
    stop: float,
    stop_reason: Reason,
    extreme: float,
    breakeven_done: bool,
    high: float,
    low: float,
    atr: float,
) -> tuple[float, Reason, float, bool]:
    """Update a position's stop at a bar's close; returns ``(stop, reason, extreme, be_done)``.

    The best price since entry takes this bar's high (long) or low (short); trailing,
    chandelier and break-even candidates are computed from it, and the stop moves only in the
    position's favour. The reason names the rule that set the current level.
    """
    best = high if side > 0 else low
    if side * (best - extreme) > 0:
        extreme = best
    if (
        cfg.breakeven_trigger_r is not None
        and not breakeven_done
        and initial_risk > 0
        and side * (extreme - entry) >= cfg.breakeven_trigger_r * initial_risk
    ):
        breakeven_done = True
        if math.isnan(stop) or side * (entry - stop) > 0:
            stop, stop_reason = entry, _BREAKEVEN
    if cfg.trailing_pct is not None:
        cand = extreme * (1.0 - side * cfg.trailing_pct)
        if math.isnan(stop) or side * (cand - stop) > 0:
            stop, stop_reason = cand, _TRAILING
    if cfg.chandelier_atr_multiple is not None and atr > 0:
        cand = extreme - side * cfg.chandelier_atr_multiple * atr
        if math.isnan(stop) or side * (cand - stop) > 0:
            stop, stop_reason = cand, _CHANDELIER
    return stop, stop_reason, extreme, breakeven_done


def intrabar_exit(
    side: int, stop: float, target: float, open_: float, high: float, low: float
) -> tuple[float, bool] | None:
    """Where a bar exits a position through its resting stop or target.

    Returns ``(price, is_target)`` or ``None``. An open already through a level fills at the
    open (that is the first price of the bar). Otherwise, if the bar's range touches both
    levels, the stop is assumed to have come first.
    """
    has_stop, has_target = stop == stop, target == target  # x == x is False only for NaN
    # the short branch mirrors the long one with every comparison reversed, on purpose: the
    # rule reads as written in the docstring (a sign trick would hide which level is which)
    if side > 0:
        if has_stop and open_ <= stop:
            return open_, False
        if has_target and open_ >= target:
            return open_, True
        if has_stop and low <= stop:
            return stop, False
        if has_target and high >= target:
            return target, True
    else:
        if has_stop and open_ >= stop:
            return open_, False
        if has_target and open_ <= target:
            return open_, True
        if has_stop and high >= stop:
            return stop, False
        if has_target and low <= target:
            return target, True
    return None


def time_stop_due(cfg: ExitConfig, entry_bar: int, bar: int) -> bool:
    """True once the trade has been held ``time_stop_bars`` bars (decided at that bar's close)."""
    return cfg.time_stop_bars is not None and bar - entry_bar >= cfg.time_stop_bars
