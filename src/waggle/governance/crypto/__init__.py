"""Waggle's cryptography: two suites behind one interface.

``gm`` (SM3, SM4-GCM, SM2 with the standard signer ID) and ``intl`` (SHA-256,
AES-256-GCM, Ed25519). Pick one with :func:`get_suite`; every envelope,
fingerprint and signed package names the suite it was made with. Keys are PEM
files OpenSSL reads and writes (PKCS#8 and SubjectPublicKeyInfo).

Encrypting a field at rest, bound to where it is stored::

    suite = get_suite("gm")
    where = b"accounts.phone:42"
    stored = suite.encrypt(key, value, associated_data=where).to_json()
    value = open_envelope(stored, [key], associated_data=where)

Signing a record (an audit checkpoint, say)::

    stored = suite.sign(signing_key, checkpoint_digest).to_json()
    suite.verify(public_key, checkpoint_digest, load_signature_envelope(stored))
"""

from __future__ import annotations

from collections.abc import Iterable

from waggle.governance.crypto import _der
from waggle.governance.crypto.base import SecretKey, SigningKey, Suite, VerifyingKey
from waggle.governance.crypto.envelope import (
    EncryptedEnvelope,
    Envelope,
    SignatureEnvelope,
    load_encrypted_envelope,
    load_envelope,
    load_signature_envelope,
)
from waggle.governance.crypto.errors import (
    CryptoError,
    DecryptionFailed,
    EnvelopeInvalid,
    KeyInvalid,
    SignatureInvalid,
)
from waggle.governance.crypto.gm import GmSuite
from waggle.governance.crypto.intl import IntlSuite
from waggle.governance.crypto.sm2 import (
    DEFAULT_DISTINGUISHING_ID,
    EC_PUBLIC_KEY_OID,
    SM2_CURVE_OID,
)

ED25519_OID = "1.3.101.112"

SUITES: dict[str, Suite] = {"gm": GmSuite(), "intl": IntlSuite()}


def get_suite(name: str) -> Suite:
    """Return the suite called ``name`` (``gm`` or ``intl``).

    Raises:
        EnvelopeInvalid: no suite has that name.
    """
    try:
        return SUITES[name]
    except KeyError:
        raise EnvelopeInvalid(
            f"crypto suite {name!r} is unknown; expected one of {sorted(SUITES)}"
        ) from None


def suite_of(key: SigningKey | VerifyingKey | SecretKey) -> Suite:
    """Return the suite a key belongs to."""
    return get_suite(key.suite)


def load_verifying_key(pem: bytes) -> VerifyingKey:
    """Parse a ``PUBLIC KEY`` PEM of either suite, told apart by its algorithm.

    Raises:
        KeyInvalid: malformed, or neither an SM2 nor an Ed25519 key.
    """
    label, der = _der.pem_decode(pem, "public key")
    if label != "PUBLIC KEY":
        raise KeyInvalid(f"public key: expected a PUBLIC KEY PEM, found {label}")
    outer = _der.Reader(der, "public key")
    algorithm = outer.nested(_der.SEQUENCE).nested(_der.SEQUENCE).read_oid()
    return _suite_for_algorithm(algorithm).load_verifying_key(pem)


def load_signing_key(pem: bytes) -> SigningKey:
    """Parse an unencrypted private key PEM of either suite.

    Raises:
        KeyInvalid: malformed, encrypted, or neither SM2 nor Ed25519.
    """
    label, der = _der.pem_decode(pem, "private key")
    if label == "EC PRIVATE KEY":
        return SUITES["gm"].load_signing_key(pem)
    if label != "PRIVATE KEY":
        raise KeyInvalid(
            f"private key: expected an unencrypted PRIVATE KEY, found {label}"
        )
    body = _der.Reader(der, "private key").nested(_der.SEQUENCE)
    body.read_integer()
    algorithm = body.nested(_der.SEQUENCE).read_oid()
    return _suite_for_algorithm(algorithm).load_signing_key(pem)


def open_envelope(
    envelope: EncryptedEnvelope | str | bytes,
    keys: Iterable[SecretKey],
    *,
    associated_data: bytes = b"",
) -> bytes:
    """Decrypt with whichever of ``keys`` the envelope names (for key rotation).

    Raises:
        EnvelopeInvalid: malformed, or no key with the envelope's key id.
        DecryptionFailed: ciphertext, header or associated data altered.
    """
    if not isinstance(envelope, EncryptedEnvelope):
        envelope = load_encrypted_envelope(envelope)
    for key in keys:
        if key.key_id == envelope.key_id:
            suite = get_suite(envelope.suite)
            return suite.decrypt(key, envelope, associated_data=associated_data)
    raise EnvelopeInvalid(f"envelope: no key with id {envelope.key_id} is available")


def fingerprint(key: VerifyingKey) -> str:
    """Return the key's fingerprint under its own suite's hash."""
    return suite_of(key).fingerprint(key)


def _suite_for_algorithm(oid: str) -> Suite:
    if oid in (EC_PUBLIC_KEY_OID, SM2_CURVE_OID):
        return SUITES["gm"]
    if oid == ED25519_OID:
        return SUITES["intl"]
    raise KeyInvalid(f"key algorithm {oid} is neither SM2 nor Ed25519")


__all__ = [
    "DEFAULT_DISTINGUISHING_ID",
    "SUITES",
    "CryptoError",
    "DecryptionFailed",
    "EncryptedEnvelope",
    "Envelope",
    "EnvelopeInvalid",
    "KeyInvalid",
    "SecretKey",
    "SignatureEnvelope",
    "SignatureInvalid",
    "SigningKey",
    "Suite",
    "VerifyingKey",
    "fingerprint",
    "get_suite",
    "load_encrypted_envelope",
    "load_envelope",
    "load_signature_envelope",
    "load_signing_key",
    "load_verifying_key",
    "open_envelope",
    "suite_of",
]
