"""Errors of the signals context, each a subclass of one kind in ``waggle.core.errors``.

Callback errors share the root :class:`CallbackRejected` so that an endpoint can
answer every rejected platform request the same way (the API maps
``InvalidInput`` to 422) while logs and tests tell the reasons apart by ``code``.
"""

from __future__ import annotations

from waggle.core.errors import InvalidInput


class CallbackRejected(InvalidInput):
    """A platform callback failed a check; nothing in it may be trusted."""

    code = "callback_rejected"


class BadSignature(CallbackRejected):
    """The request signature does not match the shared token or key."""

    code = "bad_signature"


class DecryptionFailed(CallbackRejected):
    """The ciphertext is not valid base64, AES-CBC, padding or message framing."""

    code = "decrypt_failed"


class ReceiverMismatch(DecryptionFailed):
    """The message decrypted but was sealed for another corp, suite or app."""

    code = "receiver_mismatch"


class ReplayedRequest(CallbackRejected):
    """The timestamp and nonce were already accepted once inside the window."""

    code = "replayed"


class StaleTimestamp(ReplayedRequest):
    """The request timestamp is missing, not a number, or outside the window."""

    code = "stale_timestamp"


class MalformedPayload(CallbackRejected):
    """The body (before or after decryption) is not the XML or JSON expected."""

    code = "malformed_payload"


class CallbackConfigInvalid(InvalidInput):
    """A token, AES key or receiver id configured for a platform is unusable."""

    code = "invalid_callback_config"


class TrackerDictionaryInvalid(InvalidInput):
    """A tracker dictionary file does not follow the documented shape."""

    code = "invalid_tracker_dictionary"


__all__ = [
    "BadSignature",
    "CallbackConfigInvalid",
    "CallbackRejected",
    "DecryptionFailed",
    "MalformedPayload",
    "ReceiverMismatch",
    "ReplayedRequest",
    "StaleTimestamp",
    "TrackerDictionaryInvalid",
]
