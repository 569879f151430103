"""Signed session cookies and CSRF tokens, without a database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from waggle.core import clock
from waggle.identity.models import User
from waggle.web.sessions import SESSION_LIFETIME_SECONDS, SessionSigner


@pytest.fixture
def frozen() -> Iterator[clock.FixedClock]:
    fixed = clock.FixedClock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC))
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(None)


def _user(password_hash: str = "$argon2id$first") -> User:
    return User(id=7, username="rep_a1", password_hash=password_hash)


def test_a_cookie_reads_back_as_its_session(frozen: clock.FixedClock) -> None:
    """A freshly issued cookie names its user and expires twelve hours later."""
    signer = SessionSigner("secret")

    cookie, issued = signer.issue(_user())
    read = signer.read(cookie)

    assert read == issued
    assert read is not None and read.user_id == 7
    assert read.expires_at == int(frozen.current.timestamp()) + SESSION_LIFETIME_SECONDS


def test_a_cookie_signed_with_another_secret_is_refused(
    frozen: clock.FixedClock,
) -> None:
    """Another instance's secret cannot make a valid cookie."""
    cookie, _ = SessionSigner("other secret").issue(_user())

    assert SessionSigner("secret").read(cookie) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c.replace("v1.", "v2.", 1),
        lambda c: c.rsplit(".", 1)[0] + ".AAAA",
        lambda c: c.split(".")[0] + ".e30." + c.split(".")[2],
        lambda c: "garbage",
        lambda c: "",
    ],
    ids=["version", "signature", "payload", "garbage", "empty"],
)
def test_a_damaged_cookie_is_refused(frozen: clock.FixedClock, damage) -> None:
    """Any change to the cookie makes it worthless."""
    signer = SessionSigner("secret")
    cookie, _ = signer.issue(_user())

    assert signer.read(damage(cookie)) is None


def test_a_cookie_expires(frozen: clock.FixedClock) -> None:
    """The cookie is valid until its expiry and not a second longer."""
    signer = SessionSigner("secret")
    cookie, _ = signer.issue(_user())

    frozen.advance(seconds=SESSION_LIFETIME_SECONDS - 1)
    still_valid = signer.read(cookie)
    frozen.advance(seconds=1)

    assert still_valid is not None
    assert signer.read(cookie) is None


def test_a_new_password_changes_the_password_mark() -> None:
    """Sessions carry a mark of the password hash, so a new password ends them."""
    signer = SessionSigner("secret")

    assert signer.password_mark(_user("$argon2id$first")) != signer.password_mark(
        _user("$argon2id$second")
    )


def test_csrf_tokens_belong_to_one_session(frozen: clock.FixedClock) -> None:
    """A session accepts its own CSRF token and refuses another session's."""
    signer = SessionSigner("secret")
    _, first = signer.issue(_user())
    _, second = signer.issue(_user())

    assert signer.is_valid_csrf(first, signer.csrf_token(first))
    assert not signer.is_valid_csrf(first, signer.csrf_token(second))
    assert not signer.is_valid_csrf(first, None)
    assert not signer.is_valid_csrf(first, "")


def test_login_tokens_match_their_nonce() -> None:
    """The login form's token is valid only with the nonce of the same browser."""
    signer = SessionSigner("secret")

    assert signer.is_valid_login_token("nonce-a", signer.login_token("nonce-a"))
    assert not signer.is_valid_login_token("nonce-b", signer.login_token("nonce-a"))
    assert not signer.is_valid_login_token(None, signer.login_token("nonce-a"))
