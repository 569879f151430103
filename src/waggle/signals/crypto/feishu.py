"""Feishu / Lark (飞书) event-subscription crypto: Encrypt Key and request signature.

Per the official "Encrypt Key" and "接收事件" pages:

- Body ``{"encrypt": base64(iv + AES-256-CBC(key, iv, PKCS#7(json)))}`` with
  ``key = sha256(encrypt_key)`` and a random 16-byte ``iv``.
- ``X-Lark-Signature = hex(sha256(timestamp + nonce + encrypt_key + raw_body))``
  over the ``X-Lark-Request-Timestamp`` (Unix seconds) and
  ``X-Lark-Request-Nonce`` headers and the body bytes exactly as received.
  The request-URL check (``type: url_verification``) is not signed; it is
  authenticated by the Verification Token inside the decrypted body, and is
  answered in plaintext with ``{"challenge": ...}``.
- Other events carry the Verification Token in ``header.token`` (schema 2.0)
  or ``token`` (schema 1.0).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waggle.signals.crypto._common import (
    AES_BLOCK,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    check_signature,
    decode_base64,
    encrypted_field,
    parse_json_object,
    pkcs7_pad,
    pkcs7_unpad,
)
from waggle.signals.crypto.replay import ReplayGuard
from waggle.signals.errors import (
    BadSignature,
    CallbackConfigInvalid,
    DecryptionFailed,
    MalformedPayload,
)

PLATFORM = "Feishu"
URL_VERIFICATION = "url_verification"


@dataclass(frozen=True)
class FeishuEvent:
    """A verified, decrypted event body."""

    payload: dict[str, Any]

    @property
    def is_url_verification(self) -> bool:
        """Whether this is the request-URL check rather than an event."""
        return self.payload.get("type") == URL_VERIFICATION

    def challenge_response(self) -> dict[str, str]:
        """Return the plaintext answer to the request-URL check.

        Raises:
            MalformedPayload: this is not a URL check or it lacks a challenge.
        """
        challenge = self.payload.get("challenge")
        if not self.is_url_verification or not isinstance(challenge, str):
            raise MalformedPayload(
                "Feishu callback: the body is not a url_verification request with "
                "a challenge; expected type url_verification",
                platform=PLATFORM,
            )
        return {"challenge": challenge}


class FeishuEventCrypto:
    """Verify and decrypt the event subscription of one Feishu app."""

    def __init__(
        self,
        *,
        encrypt_key: str,
        verification_token: str | None = None,
        replay_guard: ReplayGuard | None = None,
        iv_source: Callable[[], bytes] | None = None,
    ):
        if not encrypt_key:
            raise CallbackConfigInvalid(
                "Feishu callback settings: Encrypt Key is empty; expected the key "
                "shown under 事件与回调 > 加密策略",
                platform=PLATFORM,
            )
        self._encrypt_key = encrypt_key
        self._key = hashlib.sha256(encrypt_key.encode("utf-8")).digest()
        self._verification_token = verification_token
        self._iv_source = iv_source or (lambda: secrets.token_bytes(AES_BLOCK))
        self.replay_guard = replay_guard or ReplayGuard(platform=PLATFORM)

    def open_event(
        self,
        body: bytes,
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
        signature: str | None = None,
    ) -> FeishuEvent:
        """Verify and decrypt a POSTed body, given the three X-Lark-* headers.

        The signature is checked first when present; without one only a
        url_verification request is accepted (as Feishu sends it unsigned).

        Raises:
            BadSignature: wrong or missing signature, or wrong Verification Token.
            ReplayedRequest: stale timestamp or a nonce seen before.
            MalformedPayload: the body is not an encrypted JSON event.
            DecryptionFailed: the ciphertext does not decrypt with this key.
        """
        if signature is not None:
            self.verify_request(
                body, timestamp=timestamp or "", nonce=nonce or "", signature=signature
            )
        envelope = parse_json_object(body, platform=PLATFORM, what="the request body")
        encrypted = encrypted_field(envelope, "encrypt", platform=PLATFORM)
        payload = parse_json_object(
            self.decrypt(encrypted), platform=PLATFORM, what="the decrypted event"
        )
        event = FeishuEvent(payload)
        if signature is None and not event.is_url_verification:
            raise BadSignature(
                "Feishu callback: X-Lark-Signature is missing; expected it on every "
                "event except url_verification",
                platform=PLATFORM,
            )
        self._check_token(payload)
        return event

    def verify_request(
        self, body: bytes, *, timestamp: str, nonce: str, signature: str
    ) -> None:
        """Check X-Lark-Signature over the raw body, then the replay guard.

        Raises:
            BadSignature: the signature does not cover these values.
            ReplayedRequest: stale timestamp or a nonce seen before.
        """
        expected = self.sign(body, timestamp=timestamp, nonce=nonce)
        check_signature(
            expected, signature, platform=PLATFORM, field="X-Lark-Signature"
        )
        self.replay_guard.admit(timestamp=timestamp, nonce=nonce)

    def sign(self, body: bytes, *, timestamp: str, nonce: str) -> str:
        """Return the X-Lark-Signature of a request body."""
        prefix = (timestamp + nonce + self._encrypt_key).encode("utf-8")
        return hashlib.sha256(prefix + body).hexdigest()

    def encrypt(self, plaintext: bytes) -> str:
        """Return ``base64(iv + ciphertext)`` as Feishu sends it."""
        iv = self._iv_source()
        ciphertext = aes_cbc_encrypt(self._key, iv, pkcs7_pad(plaintext, AES_BLOCK))
        return base64.b64encode(iv + ciphertext).decode("ascii")

    def decrypt(self, encrypt: str | bytes) -> bytes:
        """Return the plaintext of an ``encrypt`` field.

        Raises:
            DecryptionFailed: not base64, too short, not whole blocks, bad padding.
        """
        raw = decode_base64(encrypt, platform=PLATFORM, field="encrypt")
        if len(raw) < 2 * AES_BLOCK:
            raise DecryptionFailed(
                f"Feishu callback: encrypt decodes to {len(raw)} bytes; expected a "
                "16-byte IV and at least one 16-byte block",
                platform=PLATFORM,
            )
        iv, ciphertext = raw[:AES_BLOCK], raw[AES_BLOCK:]
        padded = aes_cbc_decrypt(
            self._key, iv, ciphertext, platform=PLATFORM, field="encrypt"
        )
        return pkcs7_unpad(padded, AES_BLOCK, platform=PLATFORM, field="encrypt")

    def _check_token(self, payload: dict[str, Any]) -> None:
        if self._verification_token is None:
            return
        header = payload.get("header")
        token = header.get("token") if isinstance(header, dict) else None
        token = token if token is not None else payload.get("token")
        given = token.encode("utf-8") if isinstance(token, str) else b""
        if not hmac.compare_digest(given, self._verification_token.encode("utf-8")):
            raise BadSignature(
                "Feishu callback: the Verification Token in the event does not "
                "match; expected the token configured for this app",
                code="bad_token",
                platform=PLATFORM,
            )
