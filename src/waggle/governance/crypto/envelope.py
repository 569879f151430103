"""Envelopes: small JSON documents that carry a ciphertext or a signature and
name everything needed to open or check it (suite, algorithm, key id, nonce).

An encrypted envelope's header (every field but the ciphertext) is part of
the AEAD's associated data, so the suite, algorithm, key id and nonce cannot
be swapped without the decryption failing.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from waggle.governance.crypto.errors import EnvelopeInvalid

ENVELOPE_VERSION = "waggle-envelope/1"
_ENCRYPTED_FIELDS = frozenset({"v", "kind", "suite", "alg", "kid", "nonce", "ct"})
_SIGNATURE_FIELDS = frozenset({"v", "kind", "suite", "alg", "kid", "sig"})


@dataclass(frozen=True)
class EncryptedEnvelope:
    """A ciphertext (with its GCM tag appended) and how it was made."""

    suite: str
    algorithm: str
    key_id: str
    nonce: bytes
    ciphertext: bytes

    def header(self) -> dict[str, str]:
        """Return the fields bound into the AEAD's associated data."""
        return {
            "v": ENVELOPE_VERSION,
            "kind": "encrypted",
            "suite": self.suite,
            "alg": self.algorithm,
            "kid": self.key_id,
            "nonce": _b64(self.nonce),
        }

    def to_json(self) -> str:
        return _dump({**self.header(), "ct": _b64(self.ciphertext)})


@dataclass(frozen=True)
class SignatureEnvelope:
    """A signature, the suite and algorithm that made it and the signer's key id.

    ``distinguishing_id`` is the SM2 signer ID (``None`` for Ed25519). There is
    no public nonce: SM2's k must stay secret and Ed25519 derives its own.
    """

    suite: str
    algorithm: str
    key_id: str
    signature: bytes
    distinguishing_id: str | None = None

    def to_json(self) -> str:
        document: dict[str, str] = {
            "v": ENVELOPE_VERSION,
            "kind": "signature",
            "suite": self.suite,
            "alg": self.algorithm,
            "kid": self.key_id,
            "sig": _b64(self.signature),
        }
        if self.distinguishing_id is not None:
            document["sm2_id"] = self.distinguishing_id
        return _dump(document)


Envelope = EncryptedEnvelope | SignatureEnvelope


def header_bytes(envelope: EncryptedEnvelope) -> bytes:
    """Return the canonical bytes of an encrypted envelope's header."""
    return _dump(envelope.header()).encode("ascii")


def load_envelope(text: str | bytes) -> Envelope:
    """Parse an envelope written by :meth:`to_json`.

    Raises:
        EnvelopeInvalid: not JSON, another version, unknown or missing fields.
    """
    document = _parse(text)
    kind = document.get("kind")
    if kind == "encrypted":
        _require_fields(document, _ENCRYPTED_FIELDS)
        return EncryptedEnvelope(
            suite=document["suite"],
            algorithm=document["alg"],
            key_id=document["kid"],
            nonce=_unb64(document["nonce"], "nonce"),
            ciphertext=_unb64(document["ct"], "ct"),
        )
    if kind == "signature":
        has_id = "sm2_id" in document
        _require_fields(document, _SIGNATURE_FIELDS | ({"sm2_id"} if has_id else set()))
        return SignatureEnvelope(
            suite=document["suite"],
            algorithm=document["alg"],
            key_id=document["kid"],
            signature=_unb64(document["sig"], "sig"),
            distinguishing_id=document["sm2_id"] if has_id else None,
        )
    raise EnvelopeInvalid(
        f"envelope: field 'kind' is {kind!r}, expected encrypted or signature"
    )


def load_encrypted_envelope(text: str | bytes) -> EncryptedEnvelope:
    """Parse an envelope that must hold a ciphertext.

    Raises:
        EnvelopeInvalid: malformed, or a signature envelope.
    """
    envelope = load_envelope(text)
    if not isinstance(envelope, EncryptedEnvelope):
        raise EnvelopeInvalid("envelope: expected kind 'encrypted', found 'signature'")
    return envelope


def load_signature_envelope(text: str | bytes) -> SignatureEnvelope:
    """Parse an envelope that must hold a signature.

    Raises:
        EnvelopeInvalid: malformed, or an encrypted envelope.
    """
    envelope = load_envelope(text)
    if not isinstance(envelope, SignatureEnvelope):
        raise EnvelopeInvalid("envelope: expected kind 'signature', found 'encrypted'")
    return envelope


def _parse(text: str | bytes) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EnvelopeInvalid("envelope: not a JSON document") from exc
    if not isinstance(document, dict):
        raise EnvelopeInvalid("envelope: expected a JSON object")
    if document.get("v") != ENVELOPE_VERSION:
        raise EnvelopeInvalid(f"envelope: field 'v' must be {ENVELOPE_VERSION!r}")
    return document


def _require_fields(
    document: dict[str, Any], expected: frozenset[str] | set[str]
) -> None:
    present = set(document)
    if present != expected:
        missing, unknown = sorted(expected - present), sorted(present - expected)
        raise EnvelopeInvalid(
            f"envelope: missing fields {missing}, unknown fields {unknown}"
        )
    for name in expected:
        if not isinstance(document[name], str):
            raise EnvelopeInvalid(f"envelope: field {name!r} must be a string")


def _dump(document: dict[str, str]) -> str:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise EnvelopeInvalid(f"envelope: field {name!r} is not base64") from exc
