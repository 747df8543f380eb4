"""Frozen backtest configuration: ``costs:`` and ``backtest:`` sections of ``params.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExecutionStyle = Literal["market", "limit"]


class CostConfig(BaseModel):
    """The one cost model both backtest paths use. All costs are ON by default.

    Prices in the candle table are treated as mid prices. A taker (market or stop) order pays
    half the quoted ``spread_bps``, a fixed ``slippage_bps`` and a square-root market-impact term
    ``impact_bps * sqrt(qty / bar volume)`` on top of the reference price, plus the taker fee on
    the notional. A take-profit is a resting limit order: it fills at its level and pays the
    maker fee. With ``max_participation`` set, no fill exceeds that share of the bar's volume;
    the rest is carried to the next bar's open (partial fills). Funding (perpetuals) is paid by
    longs and received by shorts at ``funding_rate_8h`` per 8 hours (negative: the reverse),
    pro rata per bar on the notional at each close.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    taker_fee_bps: float = Field(default=10.0, ge=0, le=1000)
    maker_fee_bps: float = Field(default=2.0, ge=0, le=1000)
    spread_bps: float = Field(default=2.0, ge=0, le=1000)
    slippage_bps: float = Field(default=1.0, ge=0, le=1000)
    impact_bps: float = Field(default=50.0, ge=0, le=10000)
    max_participation: float | None = Field(default=0.1, gt=0, le=1)
    funding_rate_8h: float = Field(default=0.0, ge=-0.05, le=0.05)

    @classmethod
    def commission_only(cls, fee_bps: float) -> CostConfig:
        """Only a flat fee on every fill (what simpler backtesters model); for comparisons."""
        return cls(taker_fee_bps=fee_bps, maker_fee_bps=fee_bps, spread_bps=0.0,
                   slippage_bps=0.0, impact_bps=0.0, max_participation=None)

    @classmethod
    def zero(cls) -> CostConfig:
        """Frictionless: only for tests and to show how much costs matter."""
        return cls.commission_only(0.0)


class BacktestConfig(BaseModel):
    """How signals become orders (``backtest:`` in ``params.yaml``).

    Signals are -1/0/+1 per bar, decided at the bar's close; an order fills at the next bar's
    open. A trade is requested when the signal changes; with ``reenter`` a flat account also
    re-requests an entry on every bar whose signal is non-zero (e.g. after a stop-out).
    ``position_fraction`` is the notional per position as a fraction of equity in the
    vectorized path (the event path sizes with the risk engine).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_equity: float = Field(default=10_000.0, gt=0)
    position_fraction: float = Field(default=1.0, gt=0, le=10)
    allow_short: bool = True
    reenter: bool = False


class ExecutionConfig(BaseModel):
    """How the policy's orders are worked.

    * ``market``: a taker order at the next bar's open (fee, half spread, slippage, impact);
    * ``limit``: a passive (maker) order at ``close x (1 - side x limit_offset_bps)`` -- a buy
      rests below the decision close -- that fills only on a LATER bar that trades THROUGH its
      price (a buy needs ``low < limit``; touching is not enough), at the limit price with the
      maker fee, at most ``costs.max_participation`` of a bar's volume per bar (partial fills).
      After ``expire_bars`` bars the rest is cancelled or, with ``on_expire: market``, sent as a
      market order at the next open. Live, such orders go out post-only where the venue
      supports it.

    Exits forced by the risk engine (stops, halts, kill switch) are always market orders.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry: ExecutionStyle = "market"
    exit: ExecutionStyle = "market"
    limit_offset_bps: float = Field(default=0.0, ge=0, le=500)
    expire_bars: int = Field(default=1, ge=1, le=1000)
    on_expire: Literal["cancel", "market"] = "cancel"

    @property
    def uses_limits(self) -> bool:
        return self.entry == "limit" or self.exit == "limit"
