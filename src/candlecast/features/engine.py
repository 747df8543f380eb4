"""The incremental feature engine: one closed candle in, the full feature row out, O(1) state.

It produces exactly what :func:`~candlecast.features.batch.compute_features` produces for the
same candle (tested on real data, within float rounding), including the restart after a gap.
Its state is plain data (``state_dict``/``from_state``) and it pickles, so a live trader can
persist it between candles and resume without replaying history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from candlecast.data.schema import timeframe_to_timedelta
from candlecast.features.config import FeatureConfig, output_columns, warmup_bars
from candlecast.features.series import timestamps_ns
from candlecast.features.streaming import (
    _REL_ZERO,
    ADX,
    ATR,
    EMA,
    MACD,
    NAN,
    RSI,
    Bollinger,
    OBVSlope,
    RingMean,
    RingMeanStd,
    Stateful,
    Stochastic,
)

STATE_VERSION = 1
_NS_PER_DAY = 86_400 * 10**9
_TWO_PI = 2.0 * math.pi
_LN2x4 = 4.0 * math.log(2.0)
_GK_C = 2.0 * math.log(2.0) - 1.0


def _fmt(ts_ns: int) -> str:
    return str(pd.Timestamp(ts_ns, tz="UTC"))


def to_ns(ts: Any) -> int:
    """A candle timestamp (tz-aware ``pd.Timestamp``/``datetime``, ``np.datetime64`` or int ns
    since the epoch, UTC) as int nanoseconds."""
    if isinstance(ts, pd.Timestamp):
        if ts.tzinfo is None:
            raise ValueError(f"candle timestamp {ts} is naive; expected tz-aware UTC")
        return int(ts.value)
    if isinstance(ts, int | np.integer):
        return int(ts)
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError(f"candle timestamp {ts} is naive; expected tz-aware UTC")
        return int(pd.Timestamp(ts).value)
    if isinstance(ts, np.datetime64):
        return int(pd.Timestamp(ts).value)
    raise TypeError(f"candle timestamp {ts!r} has unsupported type {type(ts).__name__}")


class _Indicators(Stateful):
    """Every streaming indicator the feature set needs, for one contiguous run."""

    __slots__ = ("lc", "lc_i", "sma", "ema", "rsi", "macd", "bb", "atr", "adx", "stoch",
                 "rv", "park", "gk", "vol", "obv")
    _fixed = ()

    def __init__(self, cfg: FeatureConfig) -> None:
        self.lc = [NAN] * (max(cfg.return_horizons) + 1)  # ring of log closes, NaN = not seen
        self.lc_i = 0
        self.sma = [RingMean(w) for w in cfg.ma_windows]
        self.ema = [EMA(w) for w in cfg.ma_windows]
        self.rsi = RSI(cfg.rsi_window)
        self.macd = MACD(cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
        self.bb = Bollinger(cfg.bb_window, cfg.bb_k)
        self.atr = ATR(cfg.atr_window)
        self.adx = ADX(cfg.adx_window)
        self.stoch = Stochastic(cfg.stoch_window, cfg.stoch_smooth)
        self.rv = [RingMean(w) for w in cfg.vol_windows]
        self.park = [RingMean(w) for w in cfg.vol_windows]
        self.gk = [RingMean(w) for w in cfg.vol_windows]
        self.vol = RingMeanStd(cfg.volume_z_window)
        self.obv = OBVSlope(cfg.obv_slope_window)

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lc": list(self.lc), "lc_i": self.lc_i}
        for name in self.__slots__[2:]:
            value = getattr(self, name)
            out[name] = [v.state() for v in value] if isinstance(value, list) else value.state()
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        if sorted(state) != sorted(self.__slots__):
            raise ValueError(
                f"engine state has keys {sorted(state)}, expected {sorted(self.__slots__)}"
            )
        if len(state["lc"]) != len(self.lc):
            raise ValueError("engine state does not match config.return_horizons")
        self.lc = [float(v) for v in state["lc"]]
        self.lc_i = int(state["lc_i"])
        for name in self.__slots__[2:]:
            value = getattr(self, name)
            if isinstance(value, list):
                if len(state[name]) != len(value):
                    raise ValueError(f"engine state {name!r} does not match the config windows")
                for part, sub in zip(value, state[name], strict=True):
                    part.load_state(sub)
            else:
                value.load_state(state[name])


class IncrementalFeatureEngine:
    """Feed closed candles of ONE series in time order; get the feature row of each.

    ``update(candle)`` takes a mapping with ``timestamp, open, high, low, close, volume`` (extra
    keys ignored) and returns ``{name: float}`` for :func:`output_columns` (features, then
    ``atr``, ``bars_since_reset``, ``gap_reset``). A timestamp step other than the timeframe
    restarts every indicator (warm-up again), exactly like the batch path. A timestamp not after
    the previous one, or an invalid price/volume, raises ``ValueError`` and leaves the state
    untouched.

    ``timeframe`` may be omitted and is then read from the first candle's ``timeframe`` key.
    """

    __slots__ = ("config", "timeframe", "step_ns", "names", "last_ns", "age", "_ind",
                 "_horizons", "_warm_age")

    def __init__(self, config: FeatureConfig | None = None, timeframe: str | None = None) -> None:
        self.config = config or FeatureConfig()
        self.names = tuple(output_columns(self.config))
        self.timeframe: str | None = None
        self.step_ns = 0
        if timeframe is not None:
            self._set_timeframe(timeframe)
        self.last_ns: int | None = None
        self.age = -1
        self._ind = _Indicators(self.config)
        self._horizons = tuple(self.config.return_horizons)
        self._warm_age = warmup_bars(self.config) - 1

    def _set_timeframe(self, timeframe: str) -> None:
        self.step_ns = int(timeframe_to_timedelta(timeframe).value)
        self.timeframe = timeframe

    @property
    def bars_since_reset(self) -> int:
        """Bars since the current run started (-1 before the first candle)."""
        return self.age

    @property
    def is_warm(self) -> bool:
        """True once every feature of the last row was defined (no NaN from warm-up).

        Warm is not converged: right after priming, EMA-type features still remember their
        seed; see :func:`~candlecast.features.config.priming_bars`.
        """
        return self.age >= self._warm_age

    def update(self, candle: Mapping[str, Any]) -> dict[str, float]:
        """Add one closed candle and return its feature row (see class docstring)."""
        if self.timeframe is None:
            if "timeframe" not in candle:
                raise ValueError("engine has no timeframe: pass timeframe= or a 'timeframe' key")
            self._set_timeframe(str(candle["timeframe"]))
        elif "timeframe" in candle and candle["timeframe"] != self.timeframe:
            raise ValueError(
                f"candle timeframe {candle['timeframe']!r} differs from the engine's "
                f"{self.timeframe!r}"
            )
        return self.update_values(
            to_ns(candle["timestamp"]), float(candle["open"]), float(candle["high"]),
            float(candle["low"]), float(candle["close"]), float(candle["volume"]),
        )

    def update_values(
        self, ts_ns: int, open_: float, high: float, low: float, close: float, volume: float
    ) -> dict[str, float]:
        """:meth:`update` with the candle already unpacked (int ns timestamp, float prices)."""
        return dict(zip(self.names, self._step(ts_ns, open_, high, low, close, volume),
                        strict=True))

    def _step(
        self, ts_ns: int, open_: float, high: float, low: float, close: float, volume: float
    ) -> list[float]:
        if not (open_ > 0.0 and high > 0.0 and low > 0.0 and close > 0.0) or math.isinf(
            open_ + high + low + close
        ):
            raise ValueError(
                f"candle at {_fmt(ts_ns)}: prices must be finite and > 0, got "
                f"open={open_} high={high} low={low} close={close}"
            )
        if not volume >= 0.0 or math.isinf(volume):
            raise ValueError(
                f"candle at {_fmt(ts_ns)}: volume must be finite and >= 0, got {volume}"
            )
        if self.step_ns == 0:
            raise ValueError("engine has no timeframe; construct it with timeframe=")
        last = self.last_ns
        gap = 0.0
        if last is not None:
            if ts_ns <= last:
                what = "duplicate" if ts_ns == last else "out-of-order"
                raise ValueError(
                    f"{what} candle: timestamp {_fmt(ts_ns)} is not after the previous {_fmt(last)}"
                )
            if ts_ns - last != self.step_ns:
                self._ind = _Indicators(self.config)
                self.age = -1
                gap = 1.0
        self.last_ns = ts_ns
        self.age += 1
        return self._compute(ts_ns, open_, high, low, close, volume, gap)

    def _compute(
        self, ts: int, o: float, h: float, lo: float, c: float, v: float, gap: float
    ) -> list[float]:
        ind = self._ind
        values: list[float] = []
        push = values.append
        lc = math.log(c)
        ring = ind.lc
        size = len(ring)
        i = ind.lc_i
        prev_lc = ring[i - 1]  # NaN until a previous bar exists in this run
        ring[i] = lc
        for hz in self._horizons:
            push(lc - ring[i - hz])  # negative indices wrap: the ring is exactly max(h)+1 long
        ind.lc_i = i + 1 if i + 1 < size else 0
        for m in ind.sma:
            push(c / m.update(c) - 1.0)
        for e in ind.ema:
            push(c / e.update(c) - 1.0)
        push(ind.rsi.update(c))
        line, sig, hist = ind.macd.update(c)
        push(line / c)
        push(sig / c)
        push(hist / c)
        pct_b, width = ind.bb.update(c)
        push(pct_b)
        push(width)
        atr = ind.atr.update(h, lo, c)
        push(atr / c)
        adx, pdi, mdi = ind.adx.update(h, lo, c)
        push(adx)
        push(pdi)
        push(mdi)
        k, d = ind.stoch.update(h, lo, c)
        push(k)
        push(d)
        r1 = lc - prev_lc
        if r1 == r1:
            for m in ind.rv:
                ms = m.update(r1 * r1)
                push(math.sqrt(ms) if ms == ms else NAN)
        else:
            values.extend([NAN] * len(ind.rv))
        hl = math.log(h / lo)
        hl2 = hl * hl
        for m in ind.park:
            ms = m.update(hl2)
            push(math.sqrt(ms / _LN2x4) if ms == ms else NAN)
        co = math.log(c / o)
        term = 0.5 * hl2 - _GK_C * co * co
        for m in ind.gk:
            ms = m.update(term)
            push(math.sqrt(ms if ms > 0.0 else 0.0) if ms == ms else NAN)
        vm, vsd = ind.vol.update(v)
        if vsd == vsd:
            push((v - vm) / vsd if vsd > _REL_ZERO * vm else 0.0)
        else:
            push(NAN)
        push(ind.obv.update(c, v))
        day = (ts % _NS_PER_DAY) / _NS_PER_DAY
        dow = ((ts // _NS_PER_DAY + 3) % 7) / 7.0
        push(math.sin(_TWO_PI * day))
        push(math.cos(_TWO_PI * day))
        push(math.sin(_TWO_PI * dow))
        push(math.cos(_TWO_PI * dow))
        push(atr)
        push(float(self.age))
        push(gap)
        return values

    def update_many(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Feed a candle table (one series, in time order) row by row; return the feature rows
        (float64, same index, no id columns). Same numbers as calling :meth:`update` per row."""
        if len(candles) == 0:
            return pd.DataFrame(columns=list(self.names), index=candles.index, dtype=np.float64)
        if self.timeframe is None:
            self._set_timeframe(str(candles["timeframe"].iloc[0]))
        if "timeframe" in candles.columns and (candles["timeframe"] != self.timeframe).any():
            raise ValueError(f"candles hold timeframes other than the engine's {self.timeframe!r}")
        columns = [timestamps_ns(candles).tolist()] + [
            candles[c].to_numpy(dtype=np.float64).tolist()
            for c in ("open", "high", "low", "close", "volume")
        ]
        step = self._step
        rows = [step(*candle) for candle in zip(*columns, strict=True)]
        return pd.DataFrame(np.array(rows, dtype=np.float64), columns=list(self.names),
                            index=candles.index)

    # --- persistence -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """All state as plain data (JSON-serialisable with Python's default ``allow_nan``)."""
        return {
            "version": STATE_VERSION,
            "config": self.config.model_dump(mode="json"),
            "timeframe": self.timeframe,
            "last_ns": self.last_ns,
            "age": self.age,
            "indicators": self._ind.state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> IncrementalFeatureEngine:
        """Rebuild an engine from :meth:`state_dict` output; it continues exactly where it was."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"engine state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        engine = cls(FeatureConfig.model_validate(state["config"]), state["timeframe"])
        engine.last_ns = None if state["last_ns"] is None else int(state["last_ns"])
        engine.age = int(state["age"])
        engine._ind.load_state(state["indicators"])
        return engine

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        restored = IncrementalFeatureEngine.from_state(state)
        for name in self.__slots__:
            setattr(self, name, getattr(restored, name))
