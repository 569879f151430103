"""The one error tree of Waggle.

Every domain error derives from :class:`WaggleError` through one of five kinds.
The API maps a kind to an HTTP status and the CLI to an exit code; each error
carries a stable ``code`` string that clients may match on.
"""

from __future__ import annotations

from typing import Any


class WaggleError(Exception):
    """Root of every error Waggle raises on purpose."""

    code = "waggle_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(WaggleError):
    """A record the caller named does not exist (or is hidden by policy)."""

    code = "not_found"


class Conflict(WaggleError):
    """The request clashes with the current state (duplicates, stale versions)."""

    code = "conflict"


class InvalidInput(WaggleError):
    """The input is malformed; the message names the record, field and expectation."""

    code = "invalid_input"


class PolicyDenied(WaggleError):
    """The governance policy forbids the action for this actor."""

    code = "policy_denied"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        action: str = "",
        resource: str = "",
        record_ids: tuple[str, ...] = (),
        **details: Any,
    ):
        super().__init__(message, code=code, **details)
        self.action = action
        self.resource = resource
        self.record_ids = record_ids


class Unauthenticated(PolicyDenied):
    """No valid credentials came with the request."""

    code = "unauthenticated"


class UpstreamFailure(WaggleError):
    """A system outside Waggle (database, IMAP server, chat platform) failed."""

    code = "upstream_failure"


__all__ = [
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PolicyDenied",
    "Unauthenticated",
    "UpstreamFailure",
    "WaggleError",
]
