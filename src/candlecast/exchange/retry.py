"""Bounded exponential backoff with jitter for transient exchange failures.

Pure and deterministic under test: the sleep function and the random generator are injected, so a
test runs in microseconds and can assert the exact delays. Only
:class:`~candlecast.exchange.errors.TransientExchangeError` is retried; anything else propagates
at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from candlecast.exchange.errors import RetriesExhaustedError, TransientExchangeError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class BackoffPolicy:
    """``max_retries`` repeats after the first attempt; delay ``base_s * 2**n`` capped at ``max_s``.

    Jitter ("equal jitter"): the actual delay is uniform in ``[d/2, d]``, so clients that failed
    together do not retry in lockstep, yet the wait never collapses to zero. A server
    ``Retry-After`` raises the delay to that value, still capped at ``max_s`` so one hostile header
    cannot stall an ingest for an hour.
    """

    max_retries: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 < self.base_s <= self.max_s:
            raise ValueError(
                f"backoff needs 0 < base_s <= max_s, got base_s={self.base_s}, max_s={self.max_s}"
            )

    def delay(self, retry: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** min(retry, 64))  # 2**1024 overflows
        wait = ceiling * (0.5 + 0.5 * rng.random())
        if retry_after_s is not None and retry_after_s > wait:
            wait = min(retry_after_s, self.max_s)
        return wait


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: what failed, how, and how long we wait."""

    what: str
    retry: int
    kind: str
    delay_s: float
    error: str


class Retrier:
    """Calls a function, retrying transient exchange failures per a :class:`BackoffPolicy`.

    ``retries`` counts every retry made through this instance (for reports); ``on_retry`` is told
    about each one before the sleep.
    """

    def __init__(
        self,
        policy: BackoffPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        self.policy = policy
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()
        self.on_retry = on_retry
        self.retries = 0

    def pause(self, what: str, kind: str, message: str) -> None:
        """Wait one first-retry backoff step and count it, without an exception.

        For answers that look wrong but raised nothing (an empty page where candles were
        expected): the caller re-asks once after this pause.
        """
        delay = self.policy.delay(0, self.rng)
        log.warning("%s: %s, asking again in %.2fs", what, message, delay)
        if self.on_retry is not None:
            self.on_retry(RetryEvent(what, 0, kind, delay, message))
        self.sleep(delay)
        self.retries += 1

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried on :class:`TransientExchangeError`; raises
        :class:`RetriesExhaustedError` when the last allowed attempt also fails."""
        retry = 0
        while True:
            try:
                return fn()
            except TransientExchangeError as error:
                if retry >= self.policy.max_retries:
                    raise RetriesExhaustedError(what, retry + 1, error) from error
                delay = self.policy.delay(retry, self.rng, error.retry_after_s)
                event = RetryEvent(what, retry, error.kind, delay, str(error))
                log.warning(
                    "%s: %s error, retry %d/%d in %.2fs: %s",
                    what,
                    error.kind,
                    retry + 1,
                    self.policy.max_retries,
                    delay,
                    error,
                )
                if self.on_retry is not None:
                    self.on_retry(event)
                self.sleep(delay)
                self.retries += 1
                retry += 1
