"""The ``intl`` suite: SHA-256, AES-256-GCM and Ed25519 (RFC 8032)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from waggle.governance.crypto.base import Suite
from waggle.governance.crypto.errors import (
    DecryptionFailed,
    KeyInvalid,
    SignatureInvalid,
)

ALGORITHM = "Ed25519"


@dataclass(frozen=True)
class Ed25519PublicKey:
    """An Ed25519 public key (32 bytes)."""

    raw: bytes
    suite = "intl"
    algorithm = ALGORITHM

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise KeyInvalid("Ed25519 public key: expected 32 bytes")

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check a 64-byte Ed25519 signature of ``message``.

        Raises:
            SignatureInvalid: it does not verify.
        """
        key = ed25519.Ed25519PublicKey.from_public_bytes(self.raw)
        try:
            key.verify(signature, message)
        except InvalidSignature as exc:
            raise SignatureInvalid("Ed25519 signature does not verify") from exc

    def spki_der(self) -> bytes:
        key = ed25519.Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )

    def public_pem(self) -> bytes:
        key = ed25519.Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )


@dataclass(frozen=True, repr=False)
class Ed25519PrivateKey:
    """An Ed25519 private key (the 32-byte seed)."""

    seed: bytes
    suite = "intl"
    algorithm = ALGORITHM

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise KeyInvalid("Ed25519 private key: expected a 32-byte seed")

    def __repr__(self) -> str:
        return f"Ed25519PrivateKey(public={self.public_key().raw.hex()})"

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        key = ed25519.Ed25519PrivateKey.generate()
        return cls(
            key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )

    def _key(self) -> ed25519.Ed25519PrivateKey:
        return ed25519.Ed25519PrivateKey.from_private_bytes(self.seed)

    def public_key(self) -> Ed25519PublicKey:
        raw = (
            self._key()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return Ed25519PublicKey(raw)

    def sign(self, message: bytes) -> bytes:
        return self._key().sign(message)

    def private_pem(self) -> bytes:
        return self._key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class IntlSuite(Suite):
    """SHA-256 hashes, AES-256-GCM encryption, Ed25519 signatures."""

    name = "intl"
    hash_algorithm = "SHA-256"
    cipher_algorithm = "AES-256-GCM"
    signature_algorithm = ALGORITHM
    secret_key_size = 32
    fingerprint_prefix = "sha256"

    def new_hash(self) -> hashes.Hash:
        return hashes.Hash(hashes.SHA256())

    def generate_signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.generate()

    def load_signing_key(self, pem: bytes) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyInvalid("Ed25519 private key: not an unencrypted PEM key") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyInvalid("Ed25519 private key: the PEM holds another algorithm")
        return Ed25519PrivateKey(
            key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )

    def load_verifying_key(self, pem: bytes) -> Ed25519PublicKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyInvalid("Ed25519 public key: not a PUBLIC KEY PEM") from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise KeyInvalid("Ed25519 public key: the PEM holds another algorithm")
        return Ed25519PublicKey(
            key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    def seal(
        self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes
    ) -> bytes:
        return AESGCM(key).encrypt(nonce, plaintext, associated_data)

    def open(
        self, key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes
    ) -> bytes:
        try:
            return AESGCM(key).decrypt(nonce, sealed, associated_data)
        except InvalidTag as exc:
            raise DecryptionFailed(
                "AES-256-GCM: authentication tag does not match"
            ) from exc
