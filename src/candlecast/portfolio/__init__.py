"""The portfolio layer: forecasts across coins -> one book's target weights.

One pure, typed :class:`PortfolioConstructor` (values in, values out) decides in the
portfolio backtest, in the signal service's ``/portfolio`` and in the trader; :mod:`.deciders`
runs it over forecast arrays for the backtester; :mod:`.tuning` chooses its configuration
inside each walk-forward fold on data before the fold's test window, net of costs.
"""

from __future__ import annotations

from candlecast.portfolio.config import PortfolioConfig, PortfolioSearchSpace
from candlecast.portfolio.construct import CoinForecast, PortfolioConstructor, PortfolioDecision

__all__ = ["CoinForecast", "PortfolioConfig", "PortfolioConstructor", "PortfolioDecision",
           "PortfolioSearchSpace"]
