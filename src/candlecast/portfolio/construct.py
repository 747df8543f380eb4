"""The portfolio constructor: forecasts of every coin, the book held, the cost model in; the
book's target weights and why out (pure, no state).

:meth:`PortfolioConstructor.decide` at a bar's close, for the universe's coins:

1. **Tradable**: a coin is decided only if it has a bar now and a forecast (expected return
   relative to the basket over the horizon, a volatility); a coin held without one is
   *frozen*: its weight stays, it counts in the caps, it is not traded. When the forecasts
   cannot rank (none, or all equal: a model without an edge answers zero everywhere) and the
   selection needs a ranking (fewer slots than coins), the book is kept as it is.
2. **Schedule**: only on bars whose number (``timestamp // bar``, the same count in the
   backtest and live) is a multiple of ``rebalance_every``; otherwise the book is held.
3. **Selection** (TopkDropout): coins ranked by expected return; a held long stays while its
   rank is within ``top_k + buffer`` (or it is younger than ``min_hold_bars``), at most
   ``max_replacements`` are dropped per rebalance, the free slots take the best-ranked coins;
   ``long_short`` mirrors this for shorts from the bottom.
4. **Weights** within each side (equal, inverse volatility, or risk parity under the
   single-index covariance of :mod:`.risk_model`), each side ``gross`` (long/short: half each,
   market neutral in money), ``max_weight`` water-filled; the book scaled to ``vol_target``.
5. **Caps**: each coin ``max_weight``, then ``max_gross``, ``max_net``, ``max_beta``, each only
   ever scaling the free (not frozen) weights down, so every cap holds on the answer.
6. **Cost gate**: a change of the selection happens only if its expected gain,
   ``sum((new - old) x expected return)``, is at least ``cost_margin`` x its cost
   (``sum(|new - old| x side cost)``); else the current selection is re-weighted instead. The
   first long-only allocation is not gated (being invested is the mandate, the selection is the
   bet). Weight changes below ``min_trade`` are not orders (exits always are).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from candlecast.backtest.config import CostConfig
from candlecast.policy.costs import side_cost
from candlecast.portfolio.config import PortfolioConfig
from candlecast.portfolio.risk_model import book_beta, book_volatility, covariance, risk_parity

NAN = math.nan
EPS = 1e-12  # |weight| below this is flat


@dataclass(frozen=True, slots=True)
class CoinForecast:
    """What the model says about one coin at a bar's close: ``expected_return`` (log, over
    the constructor's horizon, relative to the basket), ``volatility`` (one bar's return std),
    ``beta`` and ``correlation`` to the basket. NaN where unknown."""

    expected_return: float
    volatility: float
    beta: float = NAN
    correlation: float = NAN


@dataclass(frozen=True)
class PortfolioDecision:
    """The target weight of every coin of the universe and the numbers behind it."""

    weights: dict[str, float]
    reason: str  # initial | rebalance | swap_below_cost | hold | not_rebalance_bar | no_forecast
    coins: dict[str, str]  # per coin: long, short, hold, drop, frozen, flat
    expected_gain: float  # sum((target - current) x expected return) over the coins with one
    cost: float  # sum(|target - current| x side cost)
    gross: float
    net: float
    beta: float
    volatility: float  # annualized, of the target book (NaN when nothing was decided)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {"weights": dict(self.weights), "reason": self.reason, "coins": dict(self.coins),
                "expected_gain": num(self.expected_gain), "cost": num(self.cost),
                "gross": self.gross, "net": self.net, "beta": num(self.beta),
                "volatility": num(self.volatility)}


class PortfolioConstructor:
    """The rule of :class:`PortfolioConfig` (see the module docstring); ``bars_per_year``
    annualizes the book's volatility for the vol target (17,520 for 30m)."""

    def __init__(self, config: PortfolioConfig, costs: CostConfig, bars_per_year: float) -> None:
        if not bars_per_year > 0:
            raise ValueError(f"bars_per_year must be > 0, got {bars_per_year}")
        self.config, self.costs, self.bars_per_year = config, costs, bars_per_year
        self._entry_cost = side_cost(costs, config.execution.entry)
        self._exit_cost = side_cost(costs, config.execution.exit)

    def __repr__(self) -> str:
        return f"PortfolioConstructor({self.config.label()})"

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def is_rebalance_bar(self, bar_number: int) -> bool:
        return bar_number % self.config.rebalance_every == 0

    # ------------------------------------------------------------------ the decision
    def decide(self, forecasts: Mapping[str, CoinForecast], weights: Mapping[str, float],
               bars_held: Mapping[str, int], tradable: Collection[str], bar_number: int
               ) -> PortfolioDecision:
        """Target weights for the universe ``forecasts`` (every coin, NaN where unknown) given
        the ``weights`` held (signed fractions of equity, working orders' goals included),
        how many bars each has been held, which coins can trade now and the bar's number."""
        coins = list(forecasts)
        extra = [c for c in weights if c not in forecasts]
        if extra:
            raise ValueError(f"weights held in {extra}, which have no forecast entry")

        def column(name: str) -> np.ndarray:
            return np.array([getattr(forecasts[c], name) for c in coins], dtype=float)

        return self.decide_arrays(
            coins, column("expected_return"), column("volatility"), column("beta"),
            column("correlation"), np.array([float(weights.get(c, 0.0)) for c in coins]),
            np.array([int(bars_held.get(c, 0)) for c in coins]),
            np.array([c in tradable for c in coins], dtype=bool), bar_number)

    def decide_arrays(self, coins: Sequence[str], er: np.ndarray, vol: np.ndarray,
                      beta: np.ndarray, corr: np.ndarray, cur: np.ndarray, held: np.ndarray,
                      can: np.ndarray, bar_number: int) -> PortfolioDecision:
        """:meth:`decide` with the universe's values as arrays in ``coins`` order (what the
        backtest's decider passes; the same rule)."""
        usable = can & np.isfinite(er) & np.isfinite(vol) & (vol > 0)
        frozen = ~usable & (np.abs(cur) > EPS)
        if not self.is_rebalance_bar(bar_number):
            return self._kept(coins, cur, "not_rebalance_bar", frozen, er, vol, beta, corr)
        sides = 1 if self.config.mode == "long_only" else 2
        ranked = usable.sum() > sides * self.config.top_k  # else every coin is taken anyway
        if not usable.any() or (ranked and np.ptp(er[usable]) == 0.0):
            # nothing to rank: no forecast, or every coin forecast the same (a model with no
            # edge answers a zero expected return everywhere): keep the book as it is
            return self._kept(coins, cur, "no_forecast", frozen, er, vol, beta, corr)
        cov = _covariance(vol, corr)
        new_long, new_short = self._select(er, usable, cur, held)
        new = self._weights(new_long, new_short, cur, frozen, cov, beta)
        old_long = np.flatnonzero(usable & (cur > EPS)).tolist()
        old_short = np.flatnonzero(usable & (cur < -EPS)).tolist()
        reason = "rebalance"
        target = new
        if (sorted(new_long), sorted(new_short)) != (sorted(old_long), sorted(old_short)):
            initial = self.config.mode == "long_only" and not (np.abs(cur) > EPS).any()
            if initial:
                reason = "initial"
            else:
                old = self._weights(old_long, old_short, cur, frozen, cov, beta)
                gain, cost = self._gain_cost(new - old, new, old, er)
                if gain < self.config.cost_margin * cost:
                    target, reason = old, "swap_below_cost"
        target = self._min_trade(target, cur, frozen)
        target = self._caps(target, frozen, beta)
        if np.abs(target - cur).max() <= EPS:
            reason = "hold" if reason != "swap_below_cost" else reason
        return self._result(coins, cur, target, reason, frozen, er, cov, beta)

    def _kept(self, coins: Sequence[str], cur: np.ndarray, reason: str, frozen: np.ndarray,
              er: np.ndarray, vol: np.ndarray, beta: np.ndarray, corr: np.ndarray
              ) -> PortfolioDecision:
        """The book as held (caps hold on every answer, even off schedule)."""
        kept = self._caps(cur, frozen, beta)
        cov = _covariance(vol, corr) if (kept != cur).any() else None
        return self._result(coins, cur, kept, reason, frozen, er, cov, beta)

    # ------------------------------------------------------------------ steps
    def _select(self, er: np.ndarray, usable: np.ndarray, cur: np.ndarray, held: np.ndarray
                ) -> tuple[list[int], list[int]]:
        cfg = self.config
        order = sorted(np.flatnonzero(usable).tolist(), key=lambda i: (-er[i], i))
        rank = {i: r for r, i in enumerate(order)}
        longs = self._side(order, rank, cur > EPS, held, set())
        shorts: list[int] = []
        if cfg.mode == "long_short":
            bottom = order[::-1]
            shorts = self._side(bottom, {i: r for r, i in enumerate(bottom)}, cur < -EPS, held,
                                set(longs))
        return longs, shorts

    def _side(self, order: list[int], rank: dict[int, int], held_mask: np.ndarray,
              held: np.ndarray, taken: set[int]) -> list[int]:
        """TopkDropout for one side: the kept holdings and the best free coins."""
        cfg = self.config
        k = cfg.top_k
        mine = [i for i in order if held_mask[i] and i not in taken]
        keep = [i for i in mine if rank[i] < k + cfg.buffer or held[i] < cfg.min_hold_bars]
        dropped = [i for i in mine if i not in keep]
        if cfg.max_replacements is not None and len(dropped) > cfg.max_replacements:
            spared = dropped[:len(dropped) - cfg.max_replacements]  # the best-ranked of them
            keep = sorted([*keep, *spared], key=lambda i: rank[i])
        keep = keep[:k]
        free = [i for i in order if i not in keep and i not in taken]
        return [*keep, *free[:max(0, k - len(keep))]]

    def _weights(self, longs: list[int], shorts: list[int], cur: np.ndarray, frozen: np.ndarray,
                 cov: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Side weights, the vol target and the caps for a selection."""
        cfg = self.config
        target = np.where(frozen, cur, 0.0)
        available = max(cfg.gross - float(np.abs(cur[frozen]).sum()), 0.0)
        sides = [(longs, 1.0)] if cfg.mode == "long_only" else [(longs, 1.0), (shorts, -1.0)]
        side_gross = available / len(sides)
        for members, sign in sides:
            if not members:
                continue
            raw = self._within_side(members, cov)
            target[members] = sign * _water_fill(raw * side_gross, cfg.max_weight)
        if cfg.vol_target is not None and (np.abs(target[~frozen]) > EPS).any():
            vol = book_volatility(target, cov, self.bars_per_year)
            if vol > 0:
                target = np.where(frozen, target, target * (cfg.vol_target / vol))
        return self._caps(target, frozen, beta)

    def _within_side(self, members: list[int], cov: np.ndarray) -> np.ndarray:
        how = self.config.weighting
        if how == "equal" or len(members) == 1:
            return np.full(len(members), 1.0 / len(members))
        sub = cov[np.ix_(members, members)]
        if how == "inverse_vol":
            inv = 1.0 / np.sqrt(np.diag(sub))
            return inv / inv.sum()
        return risk_parity(sub)

    def _caps(self, target: np.ndarray, frozen: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Every cap, by clipping or scaling the free weights down only (see the docstring)."""
        cfg = self.config
        w = target.copy()
        free = ~frozen
        if cfg.mode == "long_only":
            w[free] = np.maximum(w[free], 0.0)  # a short held by a long-only book is closed
        if float(np.abs(w[free]).max(initial=0.0)) <= cfg.max_weight and self._within_caps(
                w, beta):
            return w
        for _ in range(4):  # each pass only shrinks; repeat for frozen-weight interactions
            w[free] = np.clip(w[free], -cfg.max_weight, cfg.max_weight)
            fixed = float(np.abs(w[frozen]).sum())
            gross_free = float(np.abs(w[free]).sum())
            if fixed + gross_free > cfg.max_gross * (1 + 1e-12) and gross_free > 0:
                w[free] *= max(cfg.max_gross - fixed, 0.0) / gross_free
            net = float(w.sum())
            if abs(net) > cfg.max_net * (1 + 1e-12):
                side = free & (np.sign(w) == np.sign(net))
                room = float(np.abs(w[side]).sum())
                if room > 0:
                    w[side] *= max(0.0, 1.0 - (abs(net) - cfg.max_net) / room)
            if cfg.max_beta is not None:
                b = book_beta(w, beta)
                free_b = book_beta(np.where(free, w, 0.0), beta)
                if abs(b) > cfg.max_beta * (1 + 1e-12) and free_b != 0 and (
                        np.sign(free_b) == np.sign(b)):
                    fixed_b = b - free_b
                    scale = (math.copysign(cfg.max_beta, b) - fixed_b) / free_b
                    w[free] *= min(1.0, max(0.0, scale))
            if self._within_caps(w, beta):
                break
        return w

    def _within_caps(self, w: np.ndarray, beta: np.ndarray) -> bool:
        cfg = self.config
        tol = 1 + 1e-9
        ok = float(np.abs(w).sum()) <= cfg.max_gross * tol and abs(float(w.sum())) <= (
            cfg.max_net * tol + EPS)
        if cfg.max_beta is not None:
            ok = ok and abs(book_beta(w, beta)) <= cfg.max_beta * tol + EPS
        return ok

    def _min_trade(self, target: np.ndarray, cur: np.ndarray, frozen: np.ndarray) -> np.ndarray:
        """No order for a change below ``min_trade``, except an exit."""
        small = ~frozen & (np.abs(target - cur) < self.config.min_trade) & (np.abs(target) > EPS)
        return np.where(small, cur, target)

    def _gain_cost(self, delta: np.ndarray, new: np.ndarray, old: np.ndarray, er: np.ndarray
                   ) -> tuple[float, float]:
        known = np.isfinite(er)
        gain = float((delta[known] * er[known]).sum())
        grows = np.abs(new) > np.abs(old)
        cost = float((np.abs(delta) * np.where(grows, self._entry_cost, self._exit_cost)).sum())
        return gain, cost

    def _result(self, coins: Sequence[str], cur: np.ndarray, target: np.ndarray, reason: str,
                frozen: np.ndarray, er: np.ndarray, cov: np.ndarray | None, beta: np.ndarray
                ) -> PortfolioDecision:
        """The answer; the book's volatility only where something was decided (``cov``)."""
        changed = (target != cur).any()
        gain, cost = self._gain_cost(target - cur, target, cur, er) if changed else (0.0, 0.0)
        tags = {c: _tag(c_, t, f) for c, c_, t, f in zip(coins, cur, target, frozen,
                                                           strict=True)}
        return PortfolioDecision(
            weights={c: float(w) for c, w in zip(coins, target, strict=True)}, reason=reason,
            coins=tags, expected_gain=gain, cost=cost, gross=float(np.abs(target).sum()),
            net=float(target.sum()), beta=book_beta(target, beta),
            volatility=NAN if cov is None else book_volatility(target, cov, self.bars_per_year))


def _covariance(vol: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """The single-index covariance, a coin without a volatility forecast taking the median
    of the others' (it may be held, frozen: it still counts in the book's risk)."""
    ok = np.isfinite(vol) & (vol > 0)
    if not ok.all():
        vol = np.where(ok, vol, float(np.median(vol[ok])) if ok.any() else 0.0)
    return covariance(vol, corr)


def _tag(current: float, target: float, frozen: bool) -> str:
    if frozen:
        return "frozen"
    if target > EPS:
        return "hold" if current > EPS else "long"
    if target < -EPS:
        return "hold" if current < -EPS else "short"
    return "drop" if abs(current) > EPS else "flat"


def _water_fill(weights: np.ndarray, cap: float) -> np.ndarray:
    """Clip ``weights`` (non-negative) at ``cap`` and hand the excess to the uncapped ones in
    proportion, keeping the sum where possible."""
    w = np.asarray(weights, dtype=float).copy()
    total = w.sum()
    for _ in range(len(w)):
        over = w > cap
        if not over.any():
            break
        w[over] = cap
        free = ~np.isclose(w, cap) & (w > 0)
        short = total - w.sum()
        if not free.any() or short <= 0:
            break
        w[free] += short * w[free] / w[free].sum()
    return np.minimum(w, cap)
