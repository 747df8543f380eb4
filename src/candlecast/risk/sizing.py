"""Position sizing: pure scalar functions (floats in, floats out).

Each returns an unsigned quantity in base units, or a rejection :class:`Reason` when the inputs
cannot justify a position (no edge, missing volatility). Quantities are not rounded to exchange
lot sizes: that belongs to the order layer of the live trader.
"""

from __future__ import annotations

import math

from candlecast.risk.config import SizingConfig
from candlecast.risk.reasons import Reason

_TOL = 1.0 + 1e-12  # float noise in qty * price must not count as a cap


def _bad(x: float) -> bool:
    return not (x > 0) or math.isinf(x)  # also catches NaN


def fixed_notional_qty(equity: float, price: float, fraction: float) -> float:
    """Notional = fraction x equity."""
    return fraction * equity / price


def fixed_fractional_qty(equity: float, stop_distance: float, risk_per_trade: float) -> float:
    """Lose ``risk_per_trade`` x equity if the stop (``stop_distance`` per unit away) is hit."""
    return risk_per_trade * equity / stop_distance


def vol_target_qty(
    equity: float, price: float, bar_volatility: float, target_volatility: float,
    bars_per_year: float,
) -> float:
    """Notional such that the position's annualized volatility is ``target_volatility``.

    ``bar_volatility`` is the standard deviation of one bar's return (e.g. 0.01 for 1 %).
    """
    annual = bar_volatility * math.sqrt(bars_per_year)
    return target_volatility / annual * equity / price


def kelly_edge(probability: float, payoff_ratio: float) -> float:
    """Full Kelly fraction ``p - (1 - p) / b`` for win probability p and payoff ratio b."""
    return probability - (1.0 - probability) / payoff_ratio


def size_position(
    cfg: SizingConfig,
    bars_per_year: float,
    equity: float,
    price: float,
    stop_distance: float = math.nan,
    bar_volatility: float = math.nan,
    probability: float = math.nan,
    payoff_ratio: float = math.nan,
) -> tuple[float, Reason | None, tuple[Reason, ...]]:
    """Uncapped quantity for one entry by ``cfg.method``.

    Returns ``(qty, reject_reason, notes)``; ``reject_reason`` is ``None`` when sizing succeeded.
    """
    method = cfg.method
    if method == "fixed_notional":
        return fixed_notional_qty(equity, price, cfg.notional_fraction), None, ()
    if method == "fixed_fractional":
        if _bad(stop_distance):
            return 0.0, Reason.REJECT_MISSING_VOLATILITY, ()
        return fixed_fractional_qty(equity, stop_distance, cfg.risk_per_trade), None, ()
    if method == "vol_target":
        if _bad(bar_volatility):
            return 0.0, Reason.REJECT_MISSING_VOLATILITY, ()
        qty = vol_target_qty(equity, price, bar_volatility, cfg.target_volatility, bars_per_year)
        return qty, None, ()
    # kelly
    if not 0.0 <= probability <= 1.0:  # NaN fails too
        return 0.0, Reason.REJECT_MISSING_PROBABILITY, ()
    payoff = payoff_ratio if payoff_ratio > 0 and not math.isinf(payoff_ratio) else (
        cfg.default_payoff_ratio
    )
    fraction = cfg.kelly_fraction * kelly_edge(probability, payoff)
    if fraction <= 0:
        return 0.0, Reason.REJECT_NO_EDGE, ()
    notes: tuple[Reason, ...] = ()
    if fraction > cfg.kelly_cap:
        fraction, notes = cfg.kelly_cap, (Reason.CAPPED_KELLY,)
    return fraction * equity / price, None, notes


def cap_position(
    cfg: SizingConfig, equity: float, price: float, qty: float, other_gross_notional: float
) -> tuple[float, Reason | None, tuple[Reason, ...]]:
    """Apply the per-position and gross-exposure caps to an entry of ``qty`` at ``price``.

    ``other_gross_notional`` is the summed absolute notional of the other open positions.
    Returns ``(qty, reject_reason, notes)``.
    """
    notes: list[Reason] = []
    limit = cfg.max_position_fraction * equity
    if cfg.max_position_notional is not None:
        limit = min(limit, cfg.max_position_notional)
    if qty * price > limit * _TOL:
        qty = limit / price
        notes.append(Reason.CAPPED_POSITION)
    room = cfg.max_gross_exposure * equity - other_gross_notional
    if room <= 0:
        return 0.0, Reason.REJECT_GROSS_EXPOSURE, tuple(notes)
    if qty * price > room * _TOL:
        qty = room / price
        notes.append(Reason.CAPPED_GROSS_EXPOSURE)
    return qty, None, tuple(notes)
