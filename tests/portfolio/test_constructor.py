"""The portfolio constructor: every cap, the turnover rules, the cost gate, untradable coins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candlecast.backtest import CostConfig
from candlecast.portfolio import CoinForecast, PortfolioConfig, PortfolioConstructor
from candlecast.portfolio.risk_model import book_volatility, covariance, risk_parity

BPY = 17_520.0
COINS = ["A", "B", "C", "D", "E"]


def _forecasts(er, vol=0.01, beta=1.0, corr=0.8) -> dict[str, CoinForecast]:
    vols = vol if isinstance(vol, list) else [vol] * len(er)
    return {c: CoinForecast(e, v, beta, corr) for c, e, v in zip(COINS, er, vols, strict=False)}


def _decide(config: PortfolioConfig, er, weights=None, held=None, tradable=None, vol=0.01,
            bar=0, costs=None):
    cons = PortfolioConstructor(config, costs or CostConfig(), BPY)
    forecasts = _forecasts(er, vol)
    return cons.decide(forecasts, weights or {}, held or {},
                       tradable if tradable is not None else set(forecasts), bar)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    er=st.lists(st.floats(-0.05, 0.05), min_size=5, max_size=5),
    vol=st.lists(st.floats(0.002, 0.05), min_size=5, max_size=5),
    beta=st.lists(st.floats(0.2, 2.0), min_size=5, max_size=5),
    held=st.lists(st.floats(-0.6, 0.6), min_size=5, max_size=5),
    mode=st.sampled_from(["long_only", "long_short"]),
    k=st.integers(1, 3), buffer=st.integers(0, 2),
    weighting=st.sampled_from(["equal", "inverse_vol", "risk_parity"]),
    vol_target=st.one_of(st.none(), st.floats(0.1, 3.0)),
    max_weight=st.floats(0.1, 1.0), max_gross=st.floats(0.5, 2.0),
    max_net=st.floats(0.0, 1.0), max_beta=st.one_of(st.none(), st.floats(0.0, 1.5)),
    margin=st.floats(0.0, 3.0), min_trade=st.floats(0.0, 0.1),
)
def test_every_cap_holds_on_every_answer(er, vol, beta, held, mode, k, buffer, weighting,
                                         vol_target, max_weight, max_gross, max_net, max_beta,
                                         margin, min_trade):
    """Whatever the forecasts, the book held (even one breaking the caps) and the settings:
    each coin within max_weight, gross within max_gross, |net| within max_net, |beta| within
    max_beta; long-only never shorts."""
    config = PortfolioConfig(mode=mode, top_k=k, buffer=buffer, weighting=weighting,
                             gross=min(1.0, max_gross), vol_target=vol_target,
                             max_weight=max_weight, max_gross=max_gross, max_net=max_net,
                             max_beta=max_beta, cost_margin=margin, min_trade=min_trade)
    cons = PortfolioConstructor(config, CostConfig(), BPY)
    forecasts = {c: CoinForecast(e, v, b, 0.7) for c, e, v, b in zip(COINS, er, vol, beta,
                                                                     strict=True)}
    weights = {c: w for c, w in zip(COINS, held, strict=True)}
    d = cons.decide(forecasts, weights, {}, set(COINS), 0)
    w = np.array([d.weights[c] for c in COINS])
    tol = 1e-9
    assert np.abs(w).max() <= max_weight + tol
    assert np.abs(w).sum() <= max_gross * (1 + tol) + tol
    assert abs(w.sum()) <= max_net * (1 + tol) + tol
    if max_beta is not None:
        assert abs(float(w @ np.array(beta))) <= max_beta * (1 + tol) + tol
    if mode == "long_only":
        assert (w >= -tol).all()  # a long-only book never shorts (a short held is closed)
    assert sum(abs(x) > 1e-12 for x in w[np.sign(w) > 0]) <= max(k + buffer, sum(
        1 for x in held if x > 1e-12))


def test_topk_dropout_keeps_a_holding_within_the_buffer_and_swaps_beyond_it():
    """top 2 with a buffer of 1: a held coin ranked 3rd stays, one ranked 4th is replaced by
    the best coin not held; max_replacements limits how many are dropped at once."""
    config = PortfolioConfig(top_k=2, buffer=1, cost_margin=0.0, min_trade=0.0)
    er = [0.05, 0.04, 0.03, 0.02, 0.01]  # A > B > C > D > E
    d = _decide(config, er, weights={"C": 0.5, "A": 0.5})  # C ranked 3rd: kept
    assert {c for c, w in d.weights.items() if w > 0} == {"A", "C"}
    assert d.coins["C"] == "hold" and d.reason in ("rebalance", "hold")
    d = _decide(config, er, weights={"D": 0.5, "A": 0.5})  # D ranked 4th: out, B in
    assert {c for c, w in d.weights.items() if w > 0} == {"A", "B"}
    assert d.coins["D"] == "drop" and d.coins["B"] == "long"
    capped = config.model_copy(update={"max_replacements": 1, "buffer": 0})
    d = _decide(capped, er, weights={"D": 0.5, "E": 0.5})  # both out of the top 2
    assert {c for c, w in d.weights.items() if w > 0} == {"A", "D"}  # E (worst) goes first
    young = config.model_copy(update={"min_hold_bars": 10, "buffer": 0})
    d = _decide(young, er, weights={"E": 0.5, "A": 0.5}, held={"E": 3, "A": 3})
    assert d.weights["E"] > 0  # held 3 bars < min_hold_bars: not dropped yet


def test_cost_gate_blocks_a_swap_that_does_not_pay():
    """Swapping coin D for B pays only if B's expected edge over D beats the round trip:
    a 10 bp difference does not (cost 2 x 13 bp), a 100 bp difference does; the first
    long-only allocation is not gated, a long/short book from flat is."""
    config = PortfolioConfig(top_k=1, buffer=0, cost_margin=1.0, min_trade=0.0, max_weight=1.0)
    held = {"D": 1.0}
    small = _decide(config, [0.0, 0.0021, 0.0, 0.0011, 0.0], weights=held)
    assert small.reason == "swap_below_cost" and small.weights["D"] == pytest.approx(1.0)
    assert small.weights["B"] == 0.0
    large = _decide(config, [0.0, 0.011, 0.0, 0.001, 0.0], weights=held)
    assert large.weights["B"] == pytest.approx(1.0) and large.weights["D"] == 0.0
    assert large.expected_gain >= large.cost > 0
    first = _decide(config, [0.0, 1e-6, 0.0, 0.0, 0.0])
    assert first.reason == "initial" and first.weights["B"] == pytest.approx(1.0)
    ls = config.model_copy(update={"mode": "long_short"})
    flat = _decide(ls, [0.0, 0.0005, 0.0, -0.0005, 0.0])
    assert flat.reason == "swap_below_cost" and all(w == 0 for w in flat.weights.values())
    wide = _decide(ls, [0.0, 0.01, 0.0, -0.01, 0.0])
    assert wide.weights["B"] == pytest.approx(0.5) and wide.weights["D"] == pytest.approx(-0.5)
    assert wide.net == pytest.approx(0.0)  # market neutral in money


def test_min_trade_schedule_and_untradable_coins():
    config = PortfolioConfig(top_k=2, buffer=0, min_trade=0.05, cost_margin=0.0,
                             rebalance_every=8)
    er = [0.05, 0.04, 0.0, 0.0, 0.0]
    d = _decide(config, er, weights={"A": 0.47, "B": 0.49})
    assert d.weights == pytest.approx({"A": 0.47, "B": 0.49, "C": 0, "D": 0, "E": 0})
    assert d.reason == "hold"  # 1-3 % resizes are below min_trade: no order
    over = _decide(config, er, weights={"A": 0.47, "B": 0.52})
    assert over.weights["B"] == pytest.approx(0.5)  # but a cap is always enforced
    off = _decide(config, er, weights={"C": 0.5}, bar=3)
    assert off.reason == "not_rebalance_bar" and off.weights["C"] == 0.5
    # A has no bar now: it is never chosen although it ranks first; a held coin without a bar
    # (C) keeps its weight, counts in the gross and is reported frozen
    d = _decide(config, er, weights={"C": 0.3}, tradable={"B", "D", "E"})
    assert d.weights["A"] == 0.0 and d.coins["A"] == "flat"
    assert d.weights["C"] == 0.3 and d.coins["C"] == "frozen"
    assert d.gross == pytest.approx(1.0)  # C's 0.3 + the rest in B and D
    assert d.weights["B"] > 0
    nothing = _decide(config, [math.nan] * 5, weights={"B": 0.5})
    assert nothing.reason == "no_forecast" and nothing.weights["B"] == 0.5


def test_weighting_and_vol_target():
    """Inverse-vol weights are proportional to 1/vol; risk parity gives equal risk
    contributions (and equals inverse vol when coins are uncorrelated); the vol target scales
    the book to its annualized volatility."""
    vols = [0.01, 0.02, 0.04, 0.01, 0.01]
    inv = _decide(PortfolioConfig(top_k=3, buffer=0, weighting="inverse_vol", max_weight=1.0),
                  [0.03, 0.02, 0.01, 0.0, -0.01], vol=vols)
    w = np.array([inv.weights[c] for c in "ABC"])
    np.testing.assert_allclose(w, np.array([4, 2, 1]) / 7)
    cov = covariance(np.array(vols[:3]), np.array([0.9, 0.5, 0.3]))
    rp = risk_parity(cov)
    contributions = rp * (cov @ rp)
    np.testing.assert_allclose(contributions, contributions.mean(), rtol=1e-8)
    uncorrelated = risk_parity(np.diag(np.array(vols[:3]) ** 2))
    np.testing.assert_allclose(uncorrelated, np.array([4, 2, 1]) / 7, rtol=1e-8)
    target = _decide(PortfolioConfig(top_k=2, buffer=0, vol_target=0.5, max_gross=3.0,
                                     max_net=3.0, max_weight=3.0),
                     [0.03, 0.02, 0.01, 0.0, -0.01], vol=vols)
    w = np.array([target.weights[c] for c in COINS])
    assert book_volatility(w, covariance(np.array(vols), np.full(5, 0.8)), BPY) == (
        pytest.approx(0.5, rel=1e-9))
    assert target.volatility == pytest.approx(0.5, rel=1e-9)


def test_forecasts_that_cannot_rank_keep_the_book_unless_every_coin_is_taken():
    """All expected returns equal (a model without an edge answers zero): a top-2 book keeps
    what it holds (its coin order would otherwise pick); a book of every coin (the
    equal-weight basket) does not need a ranking and invests."""
    flat = [0.0] * 5
    top2 = _decide(PortfolioConfig(top_k=2, buffer=0), flat, weights={"C": 0.4})
    assert top2.reason == "no_forecast" and top2.weights["C"] == 0.4 and top2.gross == 0.4
    basket = _decide(PortfolioConfig(top_k=5, buffer=0, max_weight=1.0, cost_margin=0.0),
                     flat)
    assert basket.reason == "initial"
    assert basket.weights == pytest.approx({c: 0.2 for c in COINS})
