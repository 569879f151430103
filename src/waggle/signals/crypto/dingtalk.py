"""DingTalk (钉钉) event-subscription callback crypto (HTTP push mode).

The scheme is WeCom's: ``signature = sha1(sorted([token, timestamp, nonce,
encrypt]) joined)`` and the framed AES-256-CBC ciphertext of ``_common``,
whose frame ends with the owner key (the CorpId or app key for an internal
app, the suiteKey for an ISV suite).

- The request carries ``signature`` (older SDKs: ``msg_signature``),
  ``timestamp`` (Unix milliseconds) and ``nonce`` in the query string and
  ``{"encrypt": ...}`` as the body.
- Every callback, including the ``check_url`` registration test, must be
  answered with the encrypted string ``success`` as
  ``{"msg_signature", "timeStamp", "nonce", "encrypt"}``; anything else makes
  DingTalk report error 71009 and retry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from waggle.core import clock
from waggle.signals.crypto._common import (
    FramedCipher,
    RandomPrefix,
    check_signature,
    encrypted_field,
    parse_json_object,
    random_text,
    sha1_signature,
)
from waggle.signals.crypto.replay import ReplayGuard

PLATFORM = "DingTalk"
SUCCESS = "success"


@dataclass(frozen=True)
class DingTalkReply:
    """An encrypted, signed callback answer."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON object DingTalk expects (note ``timeStamp``)."""
        return {
            "msg_signature": self.msg_signature,
            "timeStamp": self.timestamp,
            "nonce": self.nonce,
            "encrypt": self.encrypt,
        }

    def to_json(self) -> str:
        """Render :meth:`to_dict` as a JSON body."""
        return json.dumps(self.to_dict())


class DingTalkCallbackCrypto:
    """Verify, decrypt and answer the event callbacks of one DingTalk app."""

    def __init__(
        self,
        *,
        token: str,
        aes_key: str,
        owner_key: str,
        replay_guard: ReplayGuard | None = None,
        prefix_source: RandomPrefix | None = None,
    ):
        self._token = token
        self._cipher = FramedCipher(
            aes_key,
            owner_key,
            platform=PLATFORM,
            receiver_field="owner key (CorpId, app key or suiteKey)",
            prefix_source=prefix_source,
        )
        self.replay_guard = replay_guard or ReplayGuard(
            platform=PLATFORM, timestamp_unit="milliseconds"
        )

    def decrypt_event(
        self, encrypt: str, *, signature: str, timestamp: str, nonce: str
    ) -> bytes:
        """Return the plaintext event of a callback whose ciphertext is ``encrypt``.

        Raises:
            BadSignature: ``signature`` does not cover these values.
            ReplayedRequest: stale timestamp or a nonce seen before.
            DecryptionFailed: the ciphertext does not decrypt for this app.
        """
        expected = self.sign(timestamp=timestamp, nonce=nonce, encrypt=encrypt)
        check_signature(expected, signature, platform=PLATFORM, field="signature")
        self.replay_guard.admit(timestamp=timestamp, nonce=nonce)
        return self._cipher.decrypt(encrypt)

    def open_event(
        self, body: bytes | str, *, signature: str, timestamp: str, nonce: str
    ) -> dict[str, Any]:
        """Verify and decrypt a callback body and return the event object.

        Raises:
            MalformedPayload: the body or the decrypted event is not a JSON object.
            BadSignature: ``signature`` does not cover these values.
            ReplayedRequest: stale timestamp or a nonce seen before.
            DecryptionFailed: the ciphertext does not decrypt for this app.
        """
        envelope = parse_json_object(body, platform=PLATFORM, what="the request body")
        encrypted = encrypted_field(envelope, "encrypt", platform=PLATFORM)
        plaintext = self.decrypt_event(
            encrypted, signature=signature, timestamp=timestamp, nonce=nonce
        )
        return parse_json_object(
            plaintext, platform=PLATFORM, what="the decrypted event"
        )

    def encrypt_reply(
        self,
        message: str = SUCCESS,
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
    ) -> DingTalkReply:
        """Encrypt and sign an answer; timestamp (ms) and nonce default to fresh."""
        timestamp = timestamp or str(int(clock.now().timestamp() * 1000))
        nonce = nonce or random_text(16)
        encrypted = self._cipher.encrypt(message.encode("utf-8"))
        signature = self.sign(timestamp=timestamp, nonce=nonce, encrypt=encrypted)
        return DingTalkReply(encrypted, signature, timestamp, nonce)

    def success_reply(
        self, *, timestamp: str | None = None, nonce: str | None = None
    ) -> DingTalkReply:
        """Return the encrypted ``success`` every callback must be answered with."""
        return self.encrypt_reply(SUCCESS, timestamp=timestamp, nonce=nonce)

    def sign(self, *, timestamp: str, nonce: str, encrypt: str) -> str:
        """Return the signature of a ciphertext with this timestamp and nonce."""
        return sha1_signature(self._token, timestamp, nonce, encrypt)

    def encrypt(self, message: bytes) -> str:
        """Return the framed ciphertext of ``message`` (no signature)."""
        return self._cipher.encrypt(message)

    def decrypt(self, encrypt: str | bytes) -> bytes:
        """Return the message inside ``encrypt`` without any signature check.

        Raises:
            DecryptionFailed: the ciphertext is damaged or for another owner key.
        """
        return self._cipher.decrypt(encrypt)
