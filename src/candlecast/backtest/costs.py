"""The one execution-cost model shared by the vectorized and the event-driven path.

Scalar methods (the paths call them once per fill, never per bar); a fill is
``(qty, price, fee, slippage)`` where ``slippage`` is the money lost against the reference price
(half spread + slippage + impact) and ``fee`` the exchange fee.
"""

from __future__ import annotations

import math

from candlecast.backtest.config import CostConfig

Fill = tuple[float, float, float, float]  # qty, price, fee, slippage cost


class CostModel:
    """Turns an order (side, wanted qty, reference price, bar volume) into a fill."""

    __slots__ = ("config", "_cap", "_fixed", "_impact", "_maker", "_taker")

    def __init__(self, config: CostConfig | None = None) -> None:
        cfg = config if config is not None else CostConfig()
        self.config = cfg
        self._fixed = (cfg.spread_bps / 2.0 + cfg.slippage_bps) / 1e4
        self._impact = cfg.impact_bps / 1e4
        self._taker = cfg.taker_fee_bps / 1e4
        self._maker = cfg.maker_fee_bps / 1e4
        self._cap = cfg.max_participation

    @property
    def linear(self) -> bool:
        """True when every cost is proportional to notional (no impact, no volume cap)."""
        return self._impact == 0.0 and self._cap is None

    def units_for_notional(self, notional: float, ref_price: float) -> float:
        """Units a market order for ``notional`` (quote currency, signed) buys at ``ref_price``
        so that notional covers price, fixed costs and taker fee (impact excluded): an order
        sized at 100 % of equity never needs margin."""
        return notional / (ref_price * (1.0 + self._fixed + self._taker))

    def units_for_notional_maker(self, notional: float, limit_price: float) -> float:
        """Units a limit order for ``notional`` (signed) buys at ``limit_price`` so that the
        notional covers price and maker fee."""
        return notional / (limit_price * (1.0 + self._maker))

    def fillable(self, qty: float, volume: float) -> float:
        """How much of ``qty`` this bar's ``volume`` lets through (all of it without a cap)."""
        if self._cap is None:
            return qty
        room = self._cap * volume
        return qty if qty <= room else (room if room > 0 else 0.0)

    def taker(self, side: int, qty: float, ref_price: float, volume: float) -> Fill:
        """A market/stop fill of up to ``qty`` (``side`` +1 buys, -1 sells) at ``ref_price``."""
        qty = self.fillable(qty, volume)
        if qty <= 0.0:
            return 0.0, ref_price, 0.0, 0.0
        cost = self._fixed
        if self._impact > 0.0:
            participation = qty / volume if volume > 0 else 1.0
            cost += self._impact * math.sqrt(participation if participation < 1.0 else 1.0)
        price = ref_price * (1.0 + side * cost)
        return qty, price, qty * price * self._taker, qty * ref_price * cost

    def maker(self, qty: float, limit_price: float, volume: float) -> Fill:
        """A resting limit order filled at its own price (no spread, slippage or impact)."""
        qty = self.fillable(qty, volume)
        if qty <= 0.0:
            return 0.0, limit_price, 0.0, 0.0
        return qty, limit_price, qty * limit_price * self._maker, 0.0

    def funding_per_bar(self, bar_seconds: float) -> float:
        """The configured 8-hour funding rate pro rata for one bar."""
        return self.config.funding_rate_8h * bar_seconds / (8 * 3600)
