"""The cross-section one bar at a time: the live twin of
:func:`~candlecast.features.cross_section.compute_cross_section` (equal to float rounding,
tested on real data).

Feed it, in time order, each bar's per-coin feature rows (only the coins that have a bar
then); it returns that bar's coin and universe rows. The per-bar part is the same code as the
batch path (:func:`~candlecast.features.cross_section.cross_section_rows`); the windows (beta,
residuals, market volatility) are ring buffers on the time grid: a bar no coin has still ages
them. State is plain data (:meth:`CrossSectionEngine.state_dict`), so a trader can persist it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from candlecast.features.cross_section import (
    CrossSectionConfig,
    beta_columns,
    coin_feature_names,
    cross_section_rows,
    reference_return,
    universe_feature_names,
    window_std,
)

NAN = math.nan
STATE_VERSION = 1


@dataclass(frozen=True)
class CrossSectionRow:
    """One bar: per coin present, its cross-sectional columns; the universe's columns."""

    ts_ns: int
    coins: dict[str, dict[str, float]]
    universe: dict[str, float]


class CrossSectionEngine:
    """Incremental cross-section of the universe ``series_ids`` (``symbols`` in the same order,
    for the reference coin) on bars of ``step_ns`` nanoseconds."""

    def __init__(self, config: CrossSectionConfig, series_ids: Sequence[str],
                 symbols: Sequence[str], step_ns: int) -> None:
        if len(series_ids) != len(symbols) or len(set(series_ids)) != len(series_ids):
            raise ValueError("series_ids must be distinct and match symbols one to one")
        if step_ns <= 0:
            raise ValueError(f"step_ns must be > 0, got {step_ns}")
        self.config = config
        self.series_ids = tuple(series_ids)
        self.symbols = tuple(symbols)
        self.step_ns = int(step_ns)
        self._columns = config.input_columns()
        self._coin_names = coin_feature_names(config)
        self._universe_names = universe_feature_names(config)
        self.last_ns: int | None = None
        w, r, n = config.beta_window, config.residual_window, len(series_ids)
        # circular buffers on the time grid (NaN = no value in that slot); slot i % len
        self._m = np.full(w, NAN)
        self._r = np.full((w, n), NAN)
        self._e = np.full((r, n), NAN)
        self._slot = 0  # slots written so far

    def _push(self, m: float, r: np.ndarray) -> None:
        i = self._slot
        self._m[i % len(self._m)] = m
        self._r[i % len(self._r)] = r
        self._slot = i + 1

    def _push_empty(self, slots: int) -> None:
        nan_row = np.full(len(self.series_ids), NAN)
        for _ in range(min(slots, max(len(self._m), len(self._e)))):
            self._e[self._slot % len(self._e)] = nan_row
            self._push(NAN, nan_row)
        self._slot += max(0, slots - max(len(self._m), len(self._e)))

    def update(self, ts_ns: int, rows: Mapping[str, Mapping[str, float]]) -> CrossSectionRow:
        """Add the bar closing at ``ts_ns`` with the feature rows of the coins that have it
        (keyed by series id); returns the bar's cross-section. A time not after the previous
        one, off the grid, or an unknown series raises ``ValueError`` (state untouched)."""
        unknown = [k for k in rows if k not in self.series_ids]
        if unknown:
            raise ValueError(f"series {unknown} are not in the universe {list(self.series_ids)}")
        ts_ns = int(ts_ns)
        if self.last_ns is not None:
            gap = ts_ns - self.last_ns
            if gap <= 0 or gap % self.step_ns:
                raise ValueError(f"bar at {ts_ns} does not follow {self.last_ns} on the "
                                 f"{self.step_ns} ns grid")
            self._push_empty(gap // self.step_ns - 1)
        n = len(self.series_ids)
        arrays = {c: np.full((1, n), NAN) for c in self._columns}
        for j, sid in enumerate(self.series_ids):
            row = rows.get(sid)
            if row is None:
                continue
            for c in self._columns:
                value = row.get(c, NAN)
                arrays[c][0, j] = NAN if value is None else float(value)
        coins, market = cross_section_rows(arrays, self.config)
        m = float(reference_return(arrays["logret_1"], self.config, self.symbols)[0])
        r_now = arrays["logret_1"][0]
        e_slot = self._slot % len(self._e)
        self._push(m, r_now)
        pair = np.isfinite(self._r) & np.isfinite(self._m)[:, None]
        x = np.where(pair, self._m[:, None], 0.0)
        y = np.where(pair, self._r, 0.0)
        sums = {"n": pair.sum(axis=0).astype(float), "x": x.sum(axis=0), "y": y.sum(axis=0),
                "xx": (x * x).sum(axis=0), "xy": (x * y).sum(axis=0),
                "yy": (y * y).sum(axis=0)}
        beta, corr, resid_vol = beta_columns(sums, self.config.beta_min_periods)
        with np.errstate(invalid="ignore"):
            self._e[e_slot] = r_now - beta * m
        e_ok = np.isfinite(self._e)
        resid = np.where(e_ok.sum(axis=0) >= self.config.residual_min_periods,
                         np.where(e_ok, self._e, 0.0).sum(axis=0), NAN)
        m_ok = np.isfinite(self._m)
        mz = np.where(m_ok, self._m, 0.0)
        mkt_vol = window_std(np.array([mz.sum()]), np.array([(mz * mz).sum()]),
                             np.array([float(m_ok.sum())]), self.config.beta_min_periods)[0]
        rw = self.config.residual_window
        out: dict[str, dict[str, float]] = {}
        for j, sid in enumerate(self.series_ids):
            if sid not in rows:
                continue
            values = {name: float(coins[name][0, j]) for name in coins}
            values.update(xs_beta=float(beta[j]), xs_corr=float(corr[j]),
                          xs_resid_vol=float(resid_vol[j]))
            values[f"xs_resid_{rw}"] = float(resid[j])
            out[sid] = {name: values[name] for name in self._coin_names}
        universe = {name: float(market[name][0]) for name in market}
        universe.update(mkt_vol=float(mkt_vol), mkt_coins=float(len(rows)))
        self.last_ns = ts_ns
        return CrossSectionRow(ts_ns, out, {name: universe[name]
                                            for name in self._universe_names})

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain data (floats, ints, lists): what :meth:`from_state` needs to resume."""
        return {"version": STATE_VERSION, "config": self.config.model_dump(mode="json"),
                "series_ids": list(self.series_ids), "symbols": list(self.symbols),
                "step_ns": self.step_ns, "last_ns": self.last_ns, "slot": self._slot,
                "m": self._m.tolist(), "r": self._r.tolist(), "e": self._e.tolist()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> CrossSectionEngine:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"cross-section engine state version {state.get('version')!r}, "
                             f"expected {STATE_VERSION}")
        engine = cls(CrossSectionConfig.model_validate(state["config"]), state["series_ids"],
                     state["symbols"], int(state["step_ns"]))
        engine.last_ns = None if state["last_ns"] is None else int(state["last_ns"])
        engine._slot = int(state["slot"])
        for name in ("m", "r", "e"):
            values = np.asarray(state[name], dtype=float)
            current = getattr(engine, f"_{name}")
            if values.shape != current.shape:
                raise ValueError(f"cross-section engine state {name!r} has shape "
                                 f"{values.shape}, expected {current.shape} for this config")
            setattr(engine, f"_{name}", values.copy())
        return engine
