"""Primitives the three platforms share: base64, AES-256-CBC, PKCS#7, SHA-1
signatures, JSON parsing with clear errors, and the message framing that WeCom
and DingTalk both use.

The framing (WeCom 加解密方案说明; DingTalk's callback crypto is the same scheme)::

    frame = random(16) + len(msg) as 4 bytes big-endian + msg + receiver id
    encrypt = base64(AES-256-CBC(key, iv=key[:16], PKCS#7(frame, block=32)))
    key = base64decode(EncodingAESKey + "=")          # 43 characters -> 32 bytes

Decryption errors say which layer failed (base64, block length, padding,
framing, receiver). That is no padding oracle in practice: every callback path
checks the SHA-1 signature, which needs the shared token, before decrypting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from waggle.signals.errors import (
    BadSignature,
    CallbackConfigInvalid,
    DecryptionFailed,
    MalformedPayload,
    ReceiverMismatch,
)

AES_BLOCK = 16
FRAME_BLOCK = 32
RANDOM_PREFIX_LENGTH = 16
_ENCODING_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")
_ALPHANUMERIC = string.ascii_letters + string.digits

RandomPrefix = Callable[[], bytes]


def random_text(length: int) -> str:
    """Return ``length`` random letters and digits (nonces, frame prefixes)."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def random_prefix() -> bytes:
    """Return the 16 random bytes that open a frame (ASCII, as the SDKs send)."""
    return random_text(RANDOM_PREFIX_LENGTH).encode("ascii")


def decode_base64(value: str | bytes, *, platform: str, field: str) -> bytes:
    """Decode strict base64 (no whitespace, correct padding).

    Raises:
        DecryptionFailed: ``value`` is not base64.
    """
    try:
        raw = value.encode("ascii") if isinstance(value, str) else value
        return base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise DecryptionFailed(
            f"{platform} callback: {field} is not valid base64; "
            "expected the ciphertext exactly as the platform sent it",
            platform=platform,
        ) from exc


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Encrypt block-aligned ``data`` with AES-CBC (the caller pads)."""
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def aes_cbc_decrypt(
    key: bytes, iv: bytes, data: bytes, *, platform: str, field: str
) -> bytes:
    """Decrypt AES-CBC ``data``; padding is left for the caller to check.

    Raises:
        DecryptionFailed: ``data`` is empty or not a whole number of blocks.
    """
    if not data or len(data) % AES_BLOCK:
        raise DecryptionFailed(
            f"{platform} callback: {field} decodes to {len(data)} bytes; "
            f"expected a non-empty multiple of {AES_BLOCK}",
            platform=platform,
        )
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def pkcs7_pad(data: bytes, block: int) -> bytes:
    """Pad ``data`` to a multiple of ``block`` bytes (always adds 1..block bytes)."""
    amount = block - len(data) % block
    return data + bytes([amount]) * amount


def pkcs7_unpad(data: bytes, block: int, *, platform: str, field: str) -> bytes:
    """Strip PKCS#7 padding, checking every padding byte.

    Raises:
        DecryptionFailed: the padding is not 1..block copies of its length.
    """
    amount = data[-1] if data else 0
    if (
        not 1 <= amount <= min(block, len(data))
        or data[-amount:] != bytes([amount]) * amount
    ):
        raise DecryptionFailed(
            f"{platform} callback: {field} has bad PKCS#7 padding; "
            "expected the platform's key (wrong key or damaged ciphertext)",
            platform=platform,
        )
    return data[:-amount]


def sha1_signature(*parts: str) -> str:
    """Return hex SHA-1 of the parts sorted and joined (WeCom and DingTalk)."""
    joined = "".join(sorted(parts)).encode("utf-8")
    # The platforms define this signature as SHA-1; Waggle cannot choose another.
    return hashlib.sha1(joined).hexdigest()  # noqa: S324


def check_signature(expected: str, given: str, *, platform: str, field: str) -> None:
    """Compare signatures in constant time.

    Raises:
        BadSignature: ``given`` differs from ``expected``.
    """
    given_bytes = given.encode("utf-8", "replace")
    if not hmac.compare_digest(expected.encode("ascii"), given_bytes):
        raise BadSignature(
            f"{platform} callback: {field} does not match; expected the signature "
            "computed from the shared token or key and the request",
            platform=platform,
        )


def parse_json_object(data: bytes | str, *, platform: str, what: str) -> dict[str, Any]:
    """Parse ``data`` as one JSON object.

    Raises:
        MalformedPayload: ``data`` is not UTF-8 JSON or not an object.
    """
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(
            f"{platform} callback: {what} is not valid JSON ({exc}); "
            "expected a JSON object",
            platform=platform,
        ) from exc
    if not isinstance(value, dict):
        raise MalformedPayload(
            f"{platform} callback: {what} is JSON {type(value).__name__}; "
            "expected a JSON object",
            platform=platform,
        )
    return value


def encrypted_field(envelope: dict[str, Any], key: str, *, platform: str) -> str:
    """Return ``envelope[key]`` when it is a non-empty string.

    Raises:
        MalformedPayload: the field is missing, empty or not a string.
    """
    value = envelope.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(
            f"{platform} callback: body field {key!r} is missing or empty; "
            "expected the base64 ciphertext",
            platform=platform,
        )
    return value


class FramedCipher:
    """The AES key, the receiver id and the frame format of WeCom and DingTalk."""

    def __init__(
        self,
        encoding_aes_key: str,
        receiver_id: str,
        *,
        platform: str,
        receiver_field: str,
        prefix_source: RandomPrefix | None = None,
    ):
        if not _ENCODING_AES_KEY.fullmatch(encoding_aes_key):
            raise CallbackConfigInvalid(
                f"{platform} callback settings: the AES key is "
                f"{len(encoding_aes_key)} characters; expected exactly 43 letters "
                "and digits as shown in the platform's console",
                platform=platform,
            )
        self._key = base64.b64decode(encoding_aes_key + "=")
        self._iv = self._key[:AES_BLOCK]
        self._receiver = receiver_id.encode("utf-8")
        self._platform = platform
        self._receiver_field = receiver_field
        self._prefix_source = prefix_source or random_prefix

    def encrypt(self, message: bytes) -> str:
        """Frame, pad, encrypt and base64 ``message``."""
        prefix = self._prefix_source()
        if len(prefix) != RANDOM_PREFIX_LENGTH:
            raise ValueError("a frame prefix must be exactly 16 bytes")
        frame = prefix + len(message).to_bytes(4, "big") + message + self._receiver
        padded = pkcs7_pad(frame, FRAME_BLOCK)
        return base64.b64encode(aes_cbc_encrypt(self._key, self._iv, padded)).decode()

    def decrypt(self, encrypted: str | bytes, *, field: str = "encrypt") -> bytes:
        """Return the message inside ``encrypted`` after checking the receiver id.

        Raises:
            DecryptionFailed: any layer of the ciphertext is damaged.
            ReceiverMismatch: the frame names another receiver.
        """
        message, receiver = self.open_frame(encrypted, field=field)
        if not hmac.compare_digest(receiver, self._receiver):
            raise ReceiverMismatch(
                f"{self._platform} callback: the decrypted {field} is addressed to "
                f"another {self._receiver_field}; expected the configured one",
                platform=self._platform,
            )
        return message

    def open_frame(
        self, encrypted: str | bytes, *, field: str = "encrypt"
    ) -> tuple[bytes, bytes]:
        """Return the message and the receiver id of a frame, checking neither.

        Raises:
            DecryptionFailed: any layer of the ciphertext is damaged.
        """
        platform = self._platform
        raw = decode_base64(encrypted, platform=platform, field=field)
        padded = aes_cbc_decrypt(
            self._key, self._iv, raw, platform=platform, field=field
        )
        frame = pkcs7_unpad(padded, FRAME_BLOCK, platform=platform, field=field)
        header = RANDOM_PREFIX_LENGTH + 4
        declared = int.from_bytes(frame[RANDOM_PREFIX_LENGTH:header], "big")
        if len(frame) < header or header + declared > len(frame):
            raise DecryptionFailed(
                f"{platform} callback: the decrypted {field} declares a "
                f"{declared}-byte message in a {len(frame)}-byte frame; expected "
                "16 random bytes, a 4-byte length, the message and the receiver id",
                platform=platform,
            )
        return frame[header : header + declared], frame[header + declared :]
