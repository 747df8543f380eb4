"""Streaming (one value at a time) indicators with bounded state, in plain Python floats.

Each class keeps only what the next update needs (a few floats and at most one ring buffer of
its window), uses ``__slots__``, and exposes ``update(...)``, ``reset()`` and
``state()``/``load_state()`` (plain dicts of floats, ints and lists, JSON-serialisable; pickling
works too). They return ``nan`` until warmed up. Conventions (seeds, zero-division values) are
those documented in ``docs/features.md`` and mirrored by :mod:`candlecast.features.kernels`.

Why plain Python and not numpy: a numpy call costs ~1 us, more than the arithmetic of a whole
indicator update; per-update work here is a handful of float operations, or one C-level pass of
``sum``/``max``/``min`` over a small window buffer.
"""

from __future__ import annotations

import math
from operator import mul
from typing import Any, ClassVar

NAN = math.nan
_REL_ZERO = 1e-10  # a dispersion below this fraction of the level is treated as exactly zero
FRESH_SUM_MAX = 128  # windows up to this length are re-summed on every update (no drift)


class Stateful:
    """State as a plain dict of every mutable slot (nested indicators recurse).

    Slots named in ``_fixed`` are set by the constructor from the configuration (window lengths,
    precomputed weights) and are neither saved nor restored: restore into an indicator built
    with the same configuration.
    """

    __slots__ = ()
    _fixed: ClassVar[tuple[str, ...]] = ()

    def _slot_names(self) -> list[str]:
        names: list[str] = []
        for cls in type(self).__mro__:
            names.extend(s for s in getattr(cls, "__slots__", ()) if s not in self._fixed)
        return names

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._slot_names():
            value = getattr(self, name)
            if isinstance(value, Stateful):
                value = value.state()
            elif isinstance(value, list):
                value = list(value)
            out[name] = value
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        names = self._slot_names()
        if sorted(state) != sorted(names):
            raise ValueError(
                f"{type(self).__name__} state has keys {sorted(state)}, expected {sorted(names)}"
            )
        for name in names:
            current = getattr(self, name, None)
            if isinstance(current, Stateful):
                current.load_state(state[name])
            elif isinstance(state[name], list):
                setattr(self, name, list(state[name]))
            else:
                setattr(self, name, state[name])


class _Ring(Stateful):
    """A window of the last ``n`` values: ``i`` is the slot the next value goes to, ``count``
    how many values were seen (up to ``n``). Subclasses hold the buffers and clear them in
    ``_clear``."""

    __slots__ = ("n", "i", "count")
    _fixed = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.i = 0
        self.count = 0
        self._clear()

    def _clear(self) -> None:
        raise NotImplementedError

    def _filled(self) -> bool:
        """Move to the next slot; True once the window holds ``n`` values."""
        self.i = (self.i + 1) % self.n
        if self.count < self.n:
            self.count += 1
            return self.count == self.n
        return True


class RingMean(_Ring):
    """Mean of the last ``n`` values.

    Windows up to :data:`FRESH_SUM_MAX` are summed afresh on every update (one C-level ``sum``,
    cheaper than it sounds, and exact to rounding: a window of zeros gives exactly 0). Longer
    windows keep a running sum, recomputed from the buffer every ``n`` updates so rounding never
    accumulates past one window (it can leave a residue of ~1e-16 x the largest recent value).
    """

    __slots__ = ("buf", "total")

    def _clear(self) -> None:
        self.buf = [0.0] * self.n
        self.total = 0.0

    def update(self, x: float) -> float:
        i = self.i
        buf = self.buf
        n = self.n
        if n <= FRESH_SUM_MAX:
            buf[i] = x
            self.i = i + 1 if i + 1 < n else 0
            if self.count < n:
                self.count += 1
                if self.count < n:
                    return NAN
            return sum(buf) / n
        self.total += x - buf[i]
        buf[i] = x
        i += 1
        if i == n:
            i = 0
            self.total = sum(buf)  # re-anchor
        self.i = i
        if self.count < n:
            self.count += 1
            if self.count < n:
                return NAN
        return self.total / n


class RingMeanStd(_Ring):
    """Mean and population std of the last ``n`` values (two-pass over the buffer: no drift)."""

    __slots__ = ("buf",)

    def _clear(self) -> None:
        self.buf = [0.0] * self.n

    def update(self, x: float) -> tuple[float, float]:
        buf = self.buf
        buf[self.i] = x
        if not self._filled():
            return NAN, NAN
        m = sum(buf) / self.n
        return m, math.sqrt(sum([(v - m) * (v - m) for v in buf]) / self.n)


class RingMaxMin(_Ring):
    """Highest high and lowest low of the last ``n`` bars."""

    __slots__ = ("highs", "lows")

    def _clear(self) -> None:
        self.highs = [0.0] * self.n
        self.lows = [0.0] * self.n

    def update(self, high: float, low: float) -> tuple[float, float]:
        self.highs[self.i] = high
        self.lows[self.i] = low
        if not self._filled():
            return NAN, NAN
        return max(self.highs), min(self.lows)


class SMA(RingMean):
    """Simple moving average (alias of :class:`RingMean`, for symmetry with ``talipp.SMA``)."""

    __slots__ = ()


class EMA(Stateful):
    """Exponential smoothing seeded with the mean of the first ``n`` inputs.

    ``alpha`` defaults to ``2/(n+1)`` (EMA); pass ``1/n`` for Wilder's smoothing (RMA).
    """

    __slots__ = ("n", "a", "b", "count", "acc", "value")
    _fixed = ("n", "a", "b")

    def __init__(self, n: int, alpha: float | None = None) -> None:
        self.n = n
        self.a = 2.0 / (n + 1.0) if alpha is None else alpha
        self.b = 1.0 - self.a
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.acc = 0.0
        self.value = NAN

    def update(self, x: float) -> float:
        if self.count == self.n:
            self.value = self.a * x + self.b * self.value
            return self.value
        self.count += 1
        self.acc += x
        if self.count == self.n:
            self.value = self.acc / self.n
        return self.value


class RSI(Stateful):
    """Wilder's RSI: gains/losses smoothed with alpha ``1/n``, seeded by their first-``n`` mean.

    ``100 * avg_gain / (avg_gain + avg_loss)``; 50 when both averages are zero (a flat market).
    """

    __slots__ = ("prev", "gain", "loss")

    def __init__(self, n: int) -> None:
        self.gain = EMA(n, 1.0 / n)
        self.loss = EMA(n, 1.0 / n)
        self.prev = NAN

    def reset(self) -> None:
        self.gain.reset()
        self.loss.reset()
        self.prev = NAN

    def update(self, close: float) -> float:
        prev = self.prev
        self.prev = close
        if prev != prev:  # first bar: no change yet
            return NAN
        d = close - prev
        g = self.gain.update(d if d > 0.0 else 0.0)
        lo = self.loss.update(-d if d < 0.0 else 0.0)
        s = g + lo
        if s != s:
            return NAN
        return 100.0 * g / s if s > 0.0 else 50.0


class MACD(Stateful):
    """MACD line (fast EMA - slow EMA), signal (EMA of the line) and histogram, in price units."""

    __slots__ = ("fast", "slow", "signal")

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        self.fast = EMA(fast)
        self.slow = EMA(slow)
        self.signal = EMA(signal)

    def reset(self) -> None:
        self.fast.reset()
        self.slow.reset()
        self.signal.reset()

    def update(self, close: float) -> tuple[float, float, float]:
        f = self.fast.update(close)
        s = self.slow.update(close)
        if s != s:
            return NAN, NAN, NAN
        line = f - s
        sig = self.signal.update(line)
        return line, sig, line - sig


class Bollinger(Stateful):
    """Bollinger %B and width for a band of ``k`` population standard deviations around the SMA.

    ``%B = (close - lower) / (upper - lower)``, ``width = (upper - lower) / middle``; a window
    whose std is below 1e-10 x its mean counts as flat: %B 0.5, width 0.
    """

    __slots__ = ("k", "window")
    _fixed = ("k",)

    def __init__(self, n: int, k: float) -> None:
        self.k = k
        self.window = RingMeanStd(n)

    def reset(self) -> None:
        self.window.reset()

    def update(self, close: float) -> tuple[float, float]:
        mid, sd = self.window.update(close)
        if sd != sd:
            return NAN, NAN
        if sd <= _REL_ZERO * mid:  # a flat window: only rounding would make the band non-zero
            return 0.5, 0.0
        band = 2.0 * self.k * sd
        return (close - (mid - self.k * sd)) / band, band / mid


class ATR(Stateful):
    """Wilder's average true range (price units).

    The true range of a run's first bar is ``high - low`` (no previous close inside the run),
    the first ATR the mean of the first ``n`` true ranges, then Wilder smoothing (talipp's
    convention).
    """

    __slots__ = ("prev_close", "avg")

    def __init__(self, n: int) -> None:
        self.avg = EMA(n, 1.0 / n)
        self.prev_close = NAN

    def reset(self) -> None:
        self.avg.reset()
        self.prev_close = NAN

    def update(self, high: float, low: float, close: float) -> float:
        pc = self.prev_close
        self.prev_close = close
        tr = high - low
        if pc == pc:
            up = high - pc if high > pc else pc - high
            dn = low - pc if low > pc else pc - low
            tr = max(tr, up, dn)
        return self.avg.update(tr)


class ADX(Stateful):
    """Wilder's +DI, -DI and ADX over ``n`` bars (talipp's seeding convention).

    +DM/-DM from the second bar of a run, smoothed (seeded by their mean) and divided by the ATR;
    DI is 0 when the ATR is 0, DX is 0 when +DI + -DI is 0; ADX is the smoothed DX.
    """

    __slots__ = ("atr", "pdm", "mdm", "adx", "prev_high", "prev_low")

    def __init__(self, n: int) -> None:
        self.atr = ATR(n)
        self.pdm = EMA(n, 1.0 / n)
        self.mdm = EMA(n, 1.0 / n)
        self.adx = EMA(n, 1.0 / n)
        self.prev_high = NAN
        self.prev_low = NAN

    def reset(self) -> None:
        for part in (self.atr, self.pdm, self.mdm, self.adx):
            part.reset()
        self.prev_high = NAN
        self.prev_low = NAN

    def update(self, high: float, low: float, close: float) -> tuple[float, float, float]:
        atr = self.atr.update(high, low, close)
        ph, pl = self.prev_high, self.prev_low
        self.prev_high, self.prev_low = high, low
        if ph != ph:
            return NAN, NAN, NAN
        up = high - ph
        dn = pl - low
        sp = self.pdm.update(up if up > dn and up > 0.0 else 0.0)
        sm = self.mdm.update(dn if dn > up and dn > 0.0 else 0.0)
        if sp != sp:
            return NAN, NAN, NAN
        if atr > 0.0:
            pdi = 100.0 * sp / atr
            mdi = 100.0 * sm / atr
        else:
            pdi = mdi = 0.0
        s = pdi + mdi
        dx = 100.0 * abs(pdi - mdi) / s if s > 0.0 else 0.0
        return self.adx.update(dx), pdi, mdi


class Stochastic(Stateful):
    """Stochastic %K over ``n`` bars (50 when the range is zero) and %D = SMA of %K."""

    __slots__ = ("range", "d")

    def __init__(self, n: int, smooth: int) -> None:
        self.range = RingMaxMin(n)
        self.d = RingMean(smooth)

    def reset(self) -> None:
        self.range.reset()
        self.d.reset()

    def update(self, high: float, low: float, close: float) -> tuple[float, float]:
        hh, ll = self.range.update(high, low)
        if hh != hh:
            return NAN, NAN
        k = 100.0 * (close - ll) / (hh - ll) if hh > ll else 50.0
        return k, self.d.update(k)


class OBV(Stateful):
    """On-balance volume; starts at the first bar's volume (talipp's convention)."""

    __slots__ = ("prev_close", "value")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prev_close = NAN
        self.value = NAN

    def update(self, close: float, volume: float) -> float:
        pc = self.prev_close
        self.prev_close = close
        if pc != pc:
            self.value = volume
        elif close > pc:
            self.value += volume
        elif close < pc:
            self.value -= volume
        return self.value


def obv_slope_weights(n: int) -> list[float]:
    """Weights ``C[m]`` (m = 1..n-1) such that the least-squares slope of OBV over the last ``n``
    bars equals ``sum_m C[m] * signed_volume[first + m]`` (OBV levels never enter, so no
    cancellation between large cumulative sums)."""
    xbar = (n - 1) / 2.0
    sxx = sum((j - xbar) ** 2 for j in range(n))
    k = [(j - xbar) / sxx for j in range(n)]
    return [sum(k[m:]) for m in range(1, n)]


class OBVSlope(Stateful):
    """Least-squares slope of OBV over ``n`` bars divided by the mean volume of its last ``n-1``
    bars (so it is scale-free); 0 when those volumes are all zero."""

    __slots__ = ("n", "rotated", "signed", "vols", "i", "count", "prev_close")
    _fixed = ("n", "rotated")

    def __init__(self, n: int) -> None:
        self.n = n
        weights = obv_slope_weights(n)
        m = n - 1
        # rotated[i][p] is the weight of ring slot p when the next write goes to slot i
        self.rotated = [[weights[(p - i) % m] for p in range(m)] for i in range(m)]
        self.reset()

    def reset(self) -> None:
        m = self.n - 1
        self.signed = [0.0] * m
        self.vols = [0.0] * m
        self.i = 0
        self.count = 0
        self.prev_close = NAN

    def update(self, close: float, volume: float) -> float:
        pc = self.prev_close
        self.prev_close = close
        if pc != pc:
            return NAN
        i = self.i
        self.signed[i] = volume if close > pc else (-volume if close < pc else 0.0)
        self.vols[i] = volume
        i += 1
        if i == self.n - 1:
            i = 0
        self.i = i
        if self.count < self.n - 1:
            self.count += 1
            if self.count < self.n - 1:
                return NAN
        vol = sum(self.vols)
        if vol <= 0.0:
            return 0.0
        return sum(map(mul, self.rotated[i], self.signed)) * (self.n - 1) / vol
