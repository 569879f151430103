"""Errors of the channels context, each a subclass of a kind in ``waggle.core.errors``.

A channel raises :class:`PlatformUnavailable` for what may pass (a timeout, a
5xx answer, a platform's "busy" or rate-limit code), which the delivery
service retries, and :class:`PlatformRejected` for what will not (a bad
address, a wrong signature), which it does not. Both carry the platform's own
error code in ``details["platform_code"]``.
"""

from __future__ import annotations

from waggle.core.errors import InvalidInput, UpstreamFailure


class ChannelSettingsInvalid(InvalidInput):
    """A channel's settings miss a field or hold a value of the wrong shape."""

    code = "invalid_channel_settings"


class UnknownChannel(InvalidInput):
    """No channel of that name exists."""

    code = "unknown_channel"


class MessageInvalid(InvalidInput):
    """A message lacks what its channel needs (a recipient, an address, a title)."""

    code = "invalid_message"


class PlatformRejected(InvalidInput):
    """The platform refused the message for good; sending it again cannot help."""

    code = "platform_rejected"


class PlatformUnavailable(UpstreamFailure):
    """The platform could not take the message now; a later attempt may succeed."""

    code = "platform_unavailable"


__all__ = [
    "ChannelSettingsInvalid",
    "MessageInvalid",
    "PlatformRejected",
    "PlatformUnavailable",
    "UnknownChannel",
]
