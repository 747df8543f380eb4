"""What one trade costs, by execution style, as a fraction of notional (pure).

The policy compares its expected edge with the round trip: entry side + exit side. A taker side
pays the taker fee, half the spread and the fixed slippage (impact depends on size and volume
and is charged by the cost model at fill time, not estimated here); a maker side pays the maker
fee. A passive order's adverse selection is not a fee: the backtest charges it through its
fills (a limit order fills only when the price trades through it).
"""

from __future__ import annotations

from candlecast.backtest.config import CostConfig, ExecutionConfig, ExecutionStyle


def side_cost(costs: CostConfig, style: ExecutionStyle) -> float:
    """Cost of one side (entry or exit) as a fraction of notional."""
    if style == "limit":
        return costs.maker_fee_bps / 1e4
    return (costs.taker_fee_bps + costs.spread_bps / 2.0 + costs.slippage_bps) / 1e4


def round_trip_cost(costs: CostConfig, execution: ExecutionConfig) -> float:
    """Entry side plus exit side, as a fraction of notional (e.g. 0.0026 for 26 bps)."""
    return side_cost(costs, execution.entry) + side_cost(costs, execution.exit)
