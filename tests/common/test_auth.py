import pytest

from candlecast.common.auth import (
    DEFAULT_TOKEN_ENV,
    bearer_token,
    control_token_from_env,
)

SECRET = "s3cret-token-0123456789"


def test_unset_token_refuses_everything():
    token = control_token_from_env({})
    assert not token.configured
    assert not token.verify(SECRET)
    assert not token.verify("")


def test_configured_token_accepts_only_itself():
    token = control_token_from_env({DEFAULT_TOKEN_ENV: SECRET})
    assert token.verify(SECRET)
    assert not token.verify(SECRET + "x")
    assert not token.verify(SECRET[:-1])
    assert not token.verify(None)


def test_repr_never_shows_the_secret():
    token = control_token_from_env({"MY_TOKEN": SECRET}, "MY_TOKEN")
    assert SECRET not in repr(token) and SECRET not in str(token)


def test_short_token_is_an_error_naming_the_variable_not_the_value():
    with pytest.raises(ValueError, match=DEFAULT_TOKEN_ENV) as err:
        control_token_from_env({DEFAULT_TOKEN_ENV: "short"})
    assert "short" not in str(err.value).replace("too short", "")


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None),
     (None, None), ("", None)],
)
def test_bearer_token(header, expected):
    assert bearer_token(header) == expected
