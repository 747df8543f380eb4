"""Exchange errors in candlecast's own terms, so callers never need to import ccxt.

The ccxt adapter translates every ccxt exception into one of these: a
:class:`TransientExchangeError` is worth retrying (timeouts, rate limits, 5xx, dropped connections,
malformed responses); a :class:`PermanentExchangeError` is not (bad symbol, unsupported call).
Messages are single lines and never contain credentials.
"""

from __future__ import annotations

import re

_WHITESPACE = re.compile(r"\s+")
MAX_MESSAGE_CHARS = 300


def one_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` with all whitespace runs collapsed to one space, cut to ``limit`` characters."""
    flat = _WHITESPACE.sub(" ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ExchangeRequestError(Exception):
    """A request to an exchange failed; ``exchange`` is the ccxt id."""

    def __init__(self, exchange: str, message: str) -> None:
        self.exchange = exchange
        super().__init__(one_line(message))


class TransientExchangeError(ExchangeRequestError):
    """A failure that may go away if the request is repeated.

    ``kind`` is one of ``timeout``, ``rate_limit``, ``unavailable``, ``network``, ``malformed``;
    ``retry_after_s`` is the server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self, exchange: str, kind: str, message: str, retry_after_s: float | None = None
    ) -> None:
        self.kind = kind
        self.retry_after_s = retry_after_s
        super().__init__(exchange, message)


class PermanentExchangeError(ExchangeRequestError):
    """A failure that repeating the same request will not fix."""


class OrderWouldTakeError(PermanentExchangeError):
    """A post-only (maker) order refused because it would have traded at once as a taker."""


class UnknownExchangeError(ValueError):
    """The exchange id is not one ccxt knows."""


class RetriesExhaustedError(ExchangeRequestError):
    """A transient failure persisted through every allowed retry; ``last`` is the final one."""

    def __init__(self, what: str, attempts: int, last: TransientExchangeError) -> None:
        self.what = what
        self.attempts = attempts
        self.last = last
        super().__init__(
            last.exchange,
            f"{what} failed after {attempts} attempts; last error ({last.kind}): {last}",
        )
