"""The constructor over forecast arrays: what the portfolio backtester asks at each bar.

A :class:`ForecastPanel` holds, on the book's time axis (the union of the coins' open times),
per coin the forecasts made at each bar's close: the expected return relative to the basket
per horizon, the one-bar volatility, beta and correlation to the basket (NaN where unknown).
:class:`ConstructorDecider` asks one :class:`PortfolioConstructor` with the panel's row of
the bar and nothing later; :class:`FoldedBookDecider` the constructor chosen for the bar's
walk-forward fold (None: flat). A :class:`BookWindow` is the markets and panel of a span of
folds, what a search or a backtest runs on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from candlecast.backtest.config import ExecutionConfig
from candlecast.backtest.inputs import Market
from candlecast.portfolio.construct import CoinForecast, PortfolioConstructor

NAN = math.nan


@dataclass(frozen=True)
class ForecastPanel:
    """Forecast arrays on the axis: ``ts_ns`` (bars,) open times, ``expected_return[h]`` and
    ``volatility``, ``beta``, ``correlation`` (bars, coins) in ``symbols`` order."""

    symbols: tuple[str, ...]
    ts_ns: np.ndarray
    bar_ns: int
    expected_return: Mapping[int, np.ndarray]
    volatility: np.ndarray
    beta: np.ndarray
    correlation: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.ts_ns), len(self.symbols))
        for name, values in (("volatility", self.volatility), ("beta", self.beta),
                             ("correlation", self.correlation),
                             *((f"expected_return[{h}]", v)
                               for h, v in self.expected_return.items())):
            if np.shape(values) != shape:
                raise ValueError(f"panel {name} has shape {np.shape(values)}, expected {shape}")

    def rows(self, start: int, stop: int) -> ForecastPanel:
        """The panel's bars ``start .. stop - 1``."""
        return ForecastPanel(self.symbols, self.ts_ns[start:stop], self.bar_ns,
                             {h: v[start:stop] for h, v in self.expected_return.items()},
                             self.volatility[start:stop], self.beta[start:stop],
                             self.correlation[start:stop])

    def with_scores(self, horizon: int, scores: np.ndarray) -> ForecastPanel:
        """The same panel with ``scores`` as the expected return of ``horizon`` (baselines)."""
        return ForecastPanel(self.symbols, self.ts_ns, self.bar_ns, {horizon: scores},
                             self.volatility, self.beta, self.correlation)

    def forecasts(self, bar: int, horizon: int) -> dict[str, CoinForecast]:
        if horizon not in self.expected_return:
            raise ValueError(f"no forecasts for horizon {horizon}; the panel has "
                             f"{sorted(self.expected_return)}")
        er = self.expected_return[horizon][bar]
        return {s: CoinForecast(float(er[j]), float(self.volatility[bar, j]),
                                float(self.beta[bar, j]), float(self.correlation[bar, j]))
                for j, s in enumerate(self.symbols)}


@dataclass(frozen=True)
class BookWindow:
    """What a portfolio search or backtest runs on: the coins' markets over a span (universe
    order), their ATR per bar, and the forecast panel on the same axis."""

    markets: Mapping[str, Market]
    atr: Mapping[str, np.ndarray]
    panel: ForecastPanel

    def __post_init__(self) -> None:
        times = np.unique(np.concatenate([m.ts_ns for m in self.markets.values()]))
        if not np.array_equal(times, self.panel.ts_ns):
            raise ValueError("the panel's axis is not the union of the markets' bars")


class ConstructorDecider:
    """One constructor over the panel (see the module docstring); ``decisions`` keeps every
    answer's reason and numbers when ``record`` is set."""

    def __init__(self, constructor: PortfolioConstructor, panel: ForecastPanel,
                 record: bool = False) -> None:
        if constructor.horizon not in panel.expected_return:
            raise ValueError(f"no forecasts for horizon {constructor.horizon}; the panel has "
                             f"{sorted(panel.expected_return)}")
        self.constructor, self.panel, self.record = constructor, panel, record
        self.decisions: list[tuple[int, str, float, float, float, float]] = []

    def __len__(self) -> int:
        return len(self.panel.ts_ns)

    def decide(self, bar: int, ts_ns: int, weights: Mapping[str, float],
               bars_held: Mapping[str, int], tradable: frozenset[str]
               ) -> tuple[dict[str, float], str]:
        p, symbols = self.panel, self.panel.symbols
        d = self.constructor.decide_arrays(
            symbols, p.expected_return[self.constructor.horizon][bar], p.volatility[bar],
            p.beta[bar], p.correlation[bar], np.array([weights.get(s, 0.0) for s in symbols]),
            np.array([bars_held.get(s, 0) for s in symbols]),
            np.array([s in tradable for s in symbols], dtype=bool), ts_ns // p.bar_ns)
        if self.record:
            self.decisions.append((bar, d.reason, d.expected_gain, d.cost, d.gross, d.net))
        return d.weights, d.reason

    def execution_at(self, bar: int) -> ExecutionConfig:
        return self.constructor.config.execution


class FoldedBookDecider:
    """Walk-forward: bar ``t`` is decided by the constructor chosen for its fold
    (``segment[t]`` indexes ``constructors``; None: flat, every coin's target 0)."""

    def __init__(self, constructors: Sequence[PortfolioConstructor | None], segment: object,
                 panel: ForecastPanel) -> None:
        seg = np.asarray(segment, dtype=int)
        if seg.shape != (len(panel.ts_ns),) or (len(seg) and (
                seg.min() < 0 or seg.max() >= len(constructors))):
            raise ValueError(f"segment must index the {len(constructors)} constructors, one per "
                             "axis bar")
        self._segment = seg.tolist()
        self._deciders = [None if c is None else ConstructorDecider(c, panel)
                          for c in constructors]
        self._symbols = panel.symbols

    def __len__(self) -> int:
        return len(self._segment)

    def decide(self, bar: int, ts_ns: int, weights: Mapping[str, float],
               bars_held: Mapping[str, int], tradable: frozenset[str]
               ) -> tuple[dict[str, float], str]:
        decider = self._deciders[self._segment[bar]]
        if decider is None:
            return {s: 0.0 for s in self._symbols}, "flat_fold"
        return decider.decide(bar, ts_ns, weights, bars_held, tradable)

    def execution_at(self, bar: int) -> ExecutionConfig | None:
        decider = self._deciders[self._segment[bar]]
        return None if decider is None else decider.execution_at(bar)
