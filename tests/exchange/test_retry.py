"""Backoff policy and retrier: exact delays under a seeded rng, bounded attempts."""

from __future__ import annotations

import random

import pytest

from candlecast.exchange import (
    BackoffPolicy,
    PermanentExchangeError,
    Retrier,
    RetriesExhaustedError,
    TransientExchangeError,
)


class Flaky:
    """Fails ``failures`` times with ``error`` then returns ``value``."""

    def __init__(self, failures: int, error: Exception, value: str = "ok") -> None:
        self.failures, self.error, self.value, self.calls = failures, error, value, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.value


def transient(kind: str = "timeout", retry_after: float | None = None) -> TransientExchangeError:
    return TransientExchangeError("binance", kind, f"{kind} happened", retry_after)


def test_delays_grow_exponentially_with_bounded_jitter_and_cap() -> None:
    policy = BackoffPolicy(max_retries=10, base_s=0.5, max_s=4.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    # Same seed, same delays (deterministic); different draws within the cap (jittered).
    again = random.Random(7)
    assert delays == [policy.delay(n, again) for n in range(8)]
    assert len({round(d, 9) for d in delays[3:]}) == 5


def test_retry_after_raises_the_delay_but_is_capped() -> None:
    policy = BackoffPolicy(max_retries=3, base_s=0.1, max_s=5.0)
    assert policy.delay(0, random.Random(0), retry_after_s=2.0) == 2.0
    assert policy.delay(0, random.Random(0), retry_after_s=120.0) == 5.0
    # A Retry-After shorter than the backoff does not shorten it.
    backoff = policy.delay(5, random.Random(0))
    assert policy.delay(5, random.Random(0), retry_after_s=0.01) == backoff


def test_retrier_recovers_and_counts_and_sleeps_the_policy_delays() -> None:
    sleeps: list[float] = []
    policy = BackoffPolicy(max_retries=3, base_s=1.0, max_s=10.0)
    retrier = Retrier(policy, sleep=sleeps.append, rng=random.Random(3))
    fn = Flaky(2, transient())
    assert retrier.call(fn, "fetch") == "ok"
    assert fn.calls == 3
    assert retrier.retries == 2
    expected_rng = random.Random(3)
    assert sleeps == [policy.delay(0, expected_rng), policy.delay(1, expected_rng)]


def test_retrier_gives_up_after_max_retries_with_the_last_error() -> None:
    sleeps: list[float] = []
    retrier = Retrier(BackoffPolicy(max_retries=2, base_s=0.1, max_s=1.0), sleep=sleeps.append)
    fn = Flaky(10, transient("rate_limit"))
    with pytest.raises(RetriesExhaustedError) as caught:
        retrier.call(fn, "binance BTC/USDT page 4")
    assert fn.calls == 3 and len(sleeps) == 2
    error = caught.value
    assert error.attempts == 3 and error.last.kind == "rate_limit"
    assert "binance BTC/USDT page 4 failed after 3 attempts" in str(error)
    assert "\n" not in str(error)


def test_zero_retries_means_one_attempt() -> None:
    fn = Flaky(1, transient())
    with pytest.raises(RetriesExhaustedError):
        Retrier(BackoffPolicy(max_retries=0), sleep=lambda s: None).call(fn, "x")
    assert fn.calls == 1


@pytest.mark.parametrize("error", [PermanentExchangeError("binance", "bad symbol"), KeyError("x")])
def test_non_transient_errors_are_not_retried(error: Exception) -> None:
    sleeps: list[float] = []
    fn = Flaky(5, error)
    with pytest.raises(type(error)):
        Retrier(BackoffPolicy(max_retries=5), sleep=sleeps.append).call(fn, "x")
    assert fn.calls == 1 and sleeps == []


def test_retry_after_from_the_error_is_used() -> None:
    sleeps: list[float] = []
    retrier = Retrier(BackoffPolicy(max_retries=2, base_s=0.1, max_s=3.0), sleep=sleeps.append)
    retrier.call(Flaky(1, transient("rate_limit", retry_after=2.5)), "x")
    assert sleeps == [2.5]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        BackoffPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="base_s"):
        BackoffPolicy(base_s=5, max_s=1)


def test_messages_are_one_line_and_truncated() -> None:
    error = TransientExchangeError("binance", "unavailable", "502\n<html>\n" + "x" * 1000)
    assert "\n" not in str(error) and len(str(error)) <= 300


def test_delay_stays_capped_after_thousands_of_retries():
    """A stream reconnecting or backfilling for hours counts thousands of attempts: the delay
    stays in [max_s / 2, max_s] instead of overflowing (2.0 ** 1024 raises)."""
    import random

    from candlecast.exchange.retry import BackoffPolicy

    policy = BackoffPolicy(10**6, 0.5, 30.0)
    delays = [policy.delay(n, random.Random(n)) for n in (60, 1023, 1024, 5000)]
    assert all(15.0 <= d <= 30.0 for d in delays)
