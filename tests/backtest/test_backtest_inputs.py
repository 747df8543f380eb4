"""Bad input gives a clear ValueError naming the row or parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from candlecast.backtest import CostConfig, prepare_market, run_event_driven, run_vectorized


def test_the_raw_real_file_is_rejected_where_it_is_unsorted(btc_1h):
    # the bundled Coinbase file really has interleaved hours around 2017-11-12 (12-hour stamps)
    with pytest.raises(ValueError, match=r"unsorted timestamp 2017-11-11 23:00:00\+00:00 at row"):
        prepare_market(btc_1h)
    market = prepare_market(btc_1h.sort_values("timestamp").reset_index(drop=True))
    assert market.timeframe == "1h" and market.bars_per_year == 8760


def test_duplicates_nans_ohlc_and_volume(candle_factory):
    c = candle_factory(50)
    dup = c.copy()
    dup.loc[10, "timestamp"] = dup.loc[9, "timestamp"]
    with pytest.raises(ValueError, match="duplicate timestamp .* at row 10"):
        prepare_market(dup)
    bad = c.copy()
    bad.loc[7, "close"] = np.nan
    with pytest.raises(ValueError, match=r"candles.close must be finite .* at row 7"):
        prepare_market(bad)
    bad = c.copy()
    bad.loc[3, "open"] = -1.0
    with pytest.raises(ValueError, match="candles.open .* row 3"):
        prepare_market(bad)
    bad = c.copy()
    bad.loc[4, "high"] = bad.loc[4, "low"] / 2
    with pytest.raises(ValueError, match="inconsistent OHLC at row 4"):
        prepare_market(bad)
    bad = c.copy()
    bad.loc[5, "volume"] = -3.0
    with pytest.raises(ValueError, match="candles.volume .* row 5"):
        prepare_market(bad)
    naive = c.copy()
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware"):
        prepare_market(naive)
    with pytest.raises(ValueError, match="missing columns"):
        prepare_market(c.drop(columns=["volume"]))


def test_signals_must_align_and_be_minus_one_zero_or_one(candle_factory):
    c = candle_factory(50)
    with pytest.raises(ValueError, match=r"signal has shape \(49,\); expected \(50,\)"):
        run_vectorized(c, np.zeros(49))
    with pytest.raises(ValueError, match="signal must be -1, 0 or \\+1; got 0.5 at row 2"):
        run_vectorized(c, np.r_[0, 0, 0.5, np.zeros(47)])
    with pytest.raises(ValueError, match="signal is NaN at row 0"):
        run_event_driven(c, np.r_[np.nan, np.zeros(49)])
    shifted = pd.Series(0, index=c["timestamp"] + pd.Timedelta("1h"))
    with pytest.raises(ValueError, match="misaligned with the candles: row 0"):
        run_vectorized(c, shifted)
    aligned = pd.Series(1, index=pd.DatetimeIndex(c["timestamp"]))
    assert run_vectorized(c, aligned).position[-1] > 0
    with pytest.raises(ValueError, match="atr has shape"):
        run_event_driven(c, np.zeros(50), atr=np.ones(10))


def test_costs_cannot_be_negative_or_zero_where_not_allowed():
    with pytest.raises(ValidationError, match="taker_fee_bps"):
        CostConfig(taker_fee_bps=-1)
    with pytest.raises(ValidationError, match="spread_bps"):
        CostConfig(spread_bps=-0.5)
    with pytest.raises(ValidationError, match="max_participation"):
        CostConfig(max_participation=0)
    assert isinstance(ValidationError, type) and issubclass(ValidationError, ValueError)
