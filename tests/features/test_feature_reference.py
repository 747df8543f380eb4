"""Our indicators against two independent implementations, talipp and ta, on real candles.

Compared on the longest contiguous run of the real BTC 30m file (no gaps: neither library
knows about them). talipp uses our seeding conventions (SMA-seeded EMA, Wilder averages seeded
by a plain mean, first true range = high - low), so it must agree from the first valid value.
ta seeds its EMAs/Wilder averages with the first value instead (pandas ``ewm(adjust=False)``);
those differences decay geometrically, so they are compared after 1,000 bars, when the seed's
weight is below 1e-17.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import ta
from talipp.indicators import ADX, ATR, BB, EMA, MACD, OBV, RSI, SMA, Stoch
from talipp.ohlcv import OHLCV

from candlecast.features import compute_features
from candlecast.features import streaming as ours
from candlecast.features.config import FeatureConfig
from candlecast.features.series import series_arrays

DECAYED = 1000  # bars after which a different EMA seed no longer matters at 1e-9
CFG = FeatureConfig()


@pytest.fixture(scope="module")
def run(btc_30m: pd.DataFrame) -> pd.DataFrame:
    s = series_arrays(btc_30m)
    k = int(np.argmax(s.ends - s.starts))
    out = btc_30m.iloc[s.starts[k] : s.ends[k]].reset_index(drop=True)
    assert len(out) > 8000
    return out


@pytest.fixture(scope="module")
def feats(run: pd.DataFrame) -> pd.DataFrame:
    return compute_features(run, CFG)


@pytest.fixture(scope="module")
def bars(run: pd.DataFrame) -> list[OHLCV]:
    return [OHLCV(o, h, lo, c, v) for o, h, lo, c, v in
            zip(run.open, run.high, run.low, run.close, run.volume, strict=True)]


def values(indicator, field: str | None = None) -> np.ndarray:
    """talipp outputs as a float array, None -> NaN."""
    out = []
    for v in indicator:
        if v is not None and field is not None:
            v = getattr(v, field)
        out.append(np.nan if v is None else float(v))
    return np.asarray(out)


def same(ours_: np.ndarray, ref: np.ndarray, name: str, start: int = 0, atol: float = 1e-12):
    a, b = np.asarray(ours_, dtype=float)[start:], np.asarray(ref, dtype=float)[start:]
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: warm-up differs"
    assert np.isfinite(a).sum() > 0.9 * len(a), f"{name}: mostly undefined, test is vacuous"
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=atol, err_msg=name)


def test_moving_averages_vs_talipp(run, feats):
    c = run.close.to_numpy()
    for w in CFG.ma_windows:
        same(feats[f"sma_dist_{w}"], c / values(SMA(w, input_values=list(c))) - 1, f"sma {w}")
        same(feats[f"ema_dist_{w}"], c / values(EMA(w, input_values=list(c))) - 1, f"ema {w}")


def test_oscillators_vs_talipp(run, feats, bars):
    c = run.close.to_numpy()
    same(feats["rsi"], values(RSI(14, input_values=list(c))), "rsi")
    macd = MACD(12, 26, 9, input_values=list(c))
    same(feats["macd"], values(macd, "macd") / c, "macd")
    same(feats["macd_signal"], values(macd, "signal") / c, "macd_signal")
    same(feats["macd_hist"], values(macd, "histogram") / c, "macd_hist")
    bb = BB(20, 2.0, input_values=list(c))
    lb, cb, ub = values(bb, "lb"), values(bb, "cb"), values(bb, "ub")
    same(feats["bb_pct_b"], (c - lb) / (ub - lb), "bb_pct_b")
    same(feats["bb_width"], (ub - lb) / cb, "bb_width")
    stoch = Stoch(14, 3, input_values=bars)
    k = values(stoch, "k")
    assert not (run.high.rolling(14).max() == run.low.rolling(14).min()).any()  # no 100-vs-50 case
    same(feats["stoch_k"], k, "stoch_k")
    same(feats["stoch_d"], values(stoch, "d"), "stoch_d")


def test_trend_and_range_vs_talipp(run, feats, bars):
    same(feats["atr"], values(ATR(14, input_values=bars)), "atr", atol=0.0)
    same(feats["atr_pct"], values(ATR(14, input_values=bars)) / run.close.to_numpy(), "atr_pct")
    adx = ADX(14, 14, input_values=bars)
    same(feats["adx"], values(adx, "adx"), "adx")
    same(feats["plus_di"], values(adx, "plus_di"), "plus_di")
    same(feats["minus_di"], values(adx, "minus_di"), "minus_di")


def test_obv_vs_talipp_and_slope_vs_least_squares(run, feats, bars):
    mine = ours.OBV()
    obv = np.array([mine.update(b.close, b.volume) for b in bars])
    ref = values(OBV(input_values=bars))
    np.testing.assert_allclose(obv, ref, rtol=1e-12, atol=1e-6)
    # obv_slope: least-squares slope of talipp's OBV over 12 bars / mean volume of the last 11
    n = CFG.obv_slope_window
    v = run.volume.to_numpy()
    rows = range(n - 1, len(run), 97)
    expected = [np.polyfit(np.arange(n), ref[t - n + 1 : t + 1], 1)[0] / v[t - n + 2 : t + 1].mean()
                for t in rows]
    np.testing.assert_allclose(feats["obv_slope"].to_numpy()[list(rows)], expected,
                               rtol=1e-7, atol=1e-9)


def test_vs_ta(run, feats):
    c, h, lo = run.close, run.high, run.low
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ta divides by zero inside its warm-up
        refs = {
            "sma_dist_20": (c / ta.trend.SMAIndicator(c, 20).sma_indicator() - 1, 0),
            "ema_dist_50": (c / ta.trend.EMAIndicator(c, 50).ema_indicator() - 1, DECAYED),
            "rsi": (ta.momentum.RSIIndicator(c, 14).rsi(), DECAYED),
            "macd": (ta.trend.MACD(c, 26, 12, 9).macd() / c, DECAYED),
            "macd_signal": (ta.trend.MACD(c, 26, 12, 9).macd_signal() / c, DECAYED),
            "macd_hist": (ta.trend.MACD(c, 26, 12, 9).macd_diff() / c, DECAYED),
            "bb_pct_b": (ta.volatility.BollingerBands(c, 20, 2).bollinger_pband(), 0),
            "bb_width": (ta.volatility.BollingerBands(c, 20, 2).bollinger_wband() / 100, 0),
            # ta fills the ATR warm-up with zeros instead of NaN
            "atr": (ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range(), 13),
            "stoch_k": (ta.momentum.StochasticOscillator(h, lo, c, 14, 3).stoch(), 0),
            "stoch_d": (ta.momentum.StochasticOscillator(h, lo, c, 14, 3).stoch_signal(), 0),
        }
        adx = ta.trend.ADXIndicator(h, lo, c, 14)
        # ta's ADX loops stop one row early (its last value is 0): compare all but the last row
        trimmed = {"adx": adx.adx(), "plus_di": adx.adx_pos(), "minus_di": adx.adx_neg()}
    for name, (ref, start) in refs.items():
        # ta's Bollinger std is pandas' online rolling std (~1e-10 of the band off; talipp's
        # two-pass std matches ours to 1e-12 above), so %B gets a looser absolute tolerance
        atol = 0.0 if name == "atr" else 1e-9 if name == "bb_pct_b" else 1e-12
        same(feats[name].to_numpy(), ref.to_numpy(), f"ta {name}", start=start, atol=atol)
    for name, ref in trimmed.items():
        same(feats[name].to_numpy()[:-1], ref.to_numpy()[:-1], f"ta {name}", start=DECAYED)
