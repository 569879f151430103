"""Errors of Waggle's cryptography: all are invalid input to the caller."""

from __future__ import annotations

from waggle.core.errors import InvalidInput


class CryptoError(InvalidInput):
    """A key, signature, envelope or ciphertext was refused."""

    code = "crypto_error"


class KeyInvalid(CryptoError):
    """A key is malformed, of another algorithm, or off the curve."""

    code = "key_invalid"


class SignatureInvalid(CryptoError):
    """A signature does not verify for the message and key given."""

    code = "signature_invalid"


class DecryptionFailed(CryptoError):
    """A ciphertext, its associated data or its envelope was altered, or the key
    is wrong; AEAD cannot tell these apart, by design."""

    code = "decryption_failed"


class EnvelopeInvalid(CryptoError):
    """An envelope is malformed or names a suite or algorithm it cannot use."""

    code = "envelope_invalid"


__all__ = [
    "CryptoError",
    "DecryptionFailed",
    "EnvelopeInvalid",
    "KeyInvalid",
    "SignatureInvalid",
]
