"""One token mechanism for every state-changing control: the service's ``/reload``, the
dashboard's pause/resume/kill and the chat commands.

The token comes from the environment (the variable is named by configuration; the default is
``CANDLECAST_CONTROL_TOKEN``), is never logged or echoed, and is compared in constant time. No
token configured means every control is refused: safe by default. Pure: the caller (an edge)
passes the environment in.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TOKEN_ENV = "CANDLECAST_CONTROL_TOKEN"  # noqa: S105 - the variable's name, not a secret
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class ControlToken:
    """The expected token (or None: controls disabled). ``repr`` never shows the secret."""

    env_var: str
    _secret: str | None

    def __repr__(self) -> str:
        state = "set" if self._secret else "unset"
        return f"ControlToken(env_var={self.env_var!r}, {state})"

    @property
    def configured(self) -> bool:
        return self._secret is not None

    def verify(self, presented: str | None) -> bool:
        """True only if a token is configured and ``presented`` equals it (constant time)."""
        if self._secret is None or not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self._secret.encode("utf-8"))


def control_token_from_env(
    environ: Mapping[str, str], env_var: str = DEFAULT_TOKEN_ENV
) -> ControlToken:
    """Read the control token from ``environ[env_var]``; an empty value counts as unset.
    A configured token shorter than ``MIN_TOKEN_LENGTH`` is an error (the message names the
    variable, never the value)."""
    raw = environ.get(env_var, "").strip()
    if not raw:
        return ControlToken(env_var, None)
    if len(raw) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{env_var} is too short: use at least {MIN_TOKEN_LENGTH} characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return ControlToken(env_var, raw)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
