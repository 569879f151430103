"""The one interface both crypto suites implement, and the key types they share.

A suite bundles a hash, an AEAD cipher and a signature scheme. Everything a
suite produces (envelopes, fingerprints, package signatures) names the suite,
so a reader never guesses which algorithms to use.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol

from cryptography.hazmat.primitives import hashes

from waggle.governance.crypto.envelope import (
    EncryptedEnvelope,
    SignatureEnvelope,
    header_bytes,
)
from waggle.governance.crypto.errors import EnvelopeInvalid, KeyInvalid

NONCE_SIZE = 12
KEY_ID_LABEL = b"waggle/secret-key-id\x00"


class VerifyingKey(Protocol):
    """A public key that checks signatures of one suite."""

    @property
    def suite(self) -> str: ...

    @property
    def algorithm(self) -> str: ...

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureInvalid` unless ``signature`` signs ``message``."""

    def spki_der(self) -> bytes:
        """Return the DER SubjectPublicKeyInfo."""

    def public_pem(self) -> bytes:
        """Return the ``PUBLIC KEY`` PEM that OpenSSL reads."""


class SigningKey(Protocol):
    """A private key that makes signatures of one suite."""

    @property
    def suite(self) -> str: ...

    @property
    def algorithm(self) -> str: ...

    def public_key(self) -> VerifyingKey:
        """Return the matching public key."""

    def sign(self, message: bytes) -> bytes:
        """Return the raw signature bytes OpenSSL's verifiers take."""

    def private_pem(self) -> bytes:
        """Return the unencrypted PKCS#8 ``PRIVATE KEY`` PEM."""


@dataclass(frozen=True, repr=False)
class SecretKey:
    """A symmetric key of one suite, with the id envelopes name it by."""

    suite: str
    material: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"SecretKey(suite={self.suite!r}, key_id={self.key_id!r})"


class Suite(ABC):
    """A hash, an AEAD cipher and a signature scheme used together."""

    name: ClassVar[str]
    hash_algorithm: ClassVar[str]
    cipher_algorithm: ClassVar[str]
    signature_algorithm: ClassVar[str]
    secret_key_size: ClassVar[int]
    fingerprint_prefix: ClassVar[str]

    @abstractmethod
    def new_hash(self) -> hashes.Hash:
        """Return an incremental hash object of the suite's hash function."""

    @abstractmethod
    def generate_signing_key(self) -> SigningKey:
        """Return a new private key drawn from the operating system's CSPRNG."""

    @abstractmethod
    def load_signing_key(self, pem: bytes) -> SigningKey:
        """Parse an unencrypted private key PEM of this suite.

        Raises:
            KeyInvalid: malformed, encrypted, or of another algorithm.
        """

    @abstractmethod
    def load_verifying_key(self, pem: bytes) -> VerifyingKey:
        """Parse a ``PUBLIC KEY`` PEM of this suite.

        Raises:
            KeyInvalid: malformed or of another algorithm.
        """

    @abstractmethod
    def seal(
        self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes
    ) -> bytes:
        """Return ciphertext with the 16-byte tag appended (the raw AEAD)."""

    @abstractmethod
    def open(
        self, key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes
    ) -> bytes:
        """Return the plaintext of :meth:`seal`'s output.

        Raises:
            DecryptionFailed: the tag does not match.
        """

    def hash(self, data: bytes) -> bytes:
        digest = self.new_hash()
        digest.update(data)
        return digest.finalize()

    def fingerprint(self, key: VerifyingKey) -> str:
        """Return ``<hash>:<hex>`` of the key's SubjectPublicKeyInfo DER.

        The same value comes out of ``openssl pkey -pubin -outform DER | openssl
        dgst -<hash>``.
        """
        self._require_own(key.suite, "key")
        return f"{self.fingerprint_prefix}:{self.hash(key.spki_der()).hex()}"

    def generate_secret_key(self) -> SecretKey:
        return self.secret_key(secrets.token_bytes(self.secret_key_size))

    def secret_key(self, material: bytes) -> SecretKey:
        """Wrap existing key bytes; the key id is a hash of them, not the key.

        Raises:
            KeyInvalid: the length does not fit the suite's cipher.
        """
        if len(material) != self.secret_key_size:
            raise KeyInvalid(
                f"{self.name} secret key: expected {self.secret_key_size} bytes,"
                f" got {len(material)}"
            )
        key_id = self.hash(KEY_ID_LABEL + material).hex()[:32]
        return SecretKey(suite=self.name, material=material, key_id=key_id)

    def encrypt(
        self, key: SecretKey, plaintext: bytes, *, associated_data: bytes = b""
    ) -> EncryptedEnvelope:
        """Encrypt under a fresh random nonce; ``associated_data`` is bound, not stored.

        The caller must pass the same ``associated_data`` to :meth:`decrypt`
        (for field encryption: the table, column and row id).
        """
        self._require_own(key.suite, "secret key")
        envelope = EncryptedEnvelope(
            suite=self.name,
            algorithm=self.cipher_algorithm,
            key_id=key.key_id,
            nonce=secrets.token_bytes(NONCE_SIZE),
            ciphertext=b"",
        )
        sealed = self.seal(
            key.material,
            envelope.nonce,
            plaintext,
            _bound_data(envelope, associated_data),
        )
        return replace(envelope, ciphertext=sealed)

    def decrypt(
        self,
        key: SecretKey,
        envelope: EncryptedEnvelope,
        *,
        associated_data: bytes = b"",
    ) -> bytes:
        """Return the plaintext of ``envelope``.

        Raises:
            EnvelopeInvalid: the envelope names another suite, algorithm or key.
            DecryptionFailed: ciphertext, header or associated data altered.
        """
        self._require_own(key.suite, "secret key")
        self._require_own(envelope.suite, "envelope")
        if envelope.algorithm != self.cipher_algorithm:
            raise EnvelopeInvalid(
                f"envelope: algorithm {envelope.algorithm!r} is not"
                f" {self.cipher_algorithm!r}"
            )
        if envelope.key_id != key.key_id:
            raise EnvelopeInvalid(
                f"envelope: made with key {envelope.key_id}, not {key.key_id}"
            )
        if len(envelope.nonce) != NONCE_SIZE:
            raise EnvelopeInvalid(f"envelope: nonce must be {NONCE_SIZE} bytes")
        return self.open(
            key.material,
            envelope.nonce,
            envelope.ciphertext,
            _bound_data(envelope, associated_data),
        )

    def sign(self, key: SigningKey, message: bytes) -> SignatureEnvelope:
        """Sign ``message`` and return the signature with its metadata."""
        self._require_own(key.suite, "key")
        return SignatureEnvelope(
            suite=self.name,
            algorithm=self.signature_algorithm,
            key_id=self.fingerprint(key.public_key()),
            signature=key.sign(message),
            distinguishing_id=self.distinguishing_id,
        )

    def verify(
        self, key: VerifyingKey, message: bytes, envelope: SignatureEnvelope
    ) -> None:
        """Check a signature envelope against ``key`` and ``message``.

        Raises:
            EnvelopeInvalid: suite, algorithm, key id or SM2 ID do not match.
            SignatureInvalid: the signature itself does not verify.
        """
        self._require_own(envelope.suite, "envelope")
        expected = (self.signature_algorithm, self.fingerprint(key))
        if (envelope.algorithm, envelope.key_id) != expected:
            raise EnvelopeInvalid(
                f"envelope: made by {envelope.key_id} with {envelope.algorithm},"
                f" expected {expected[1]} with {expected[0]}"
            )
        if envelope.distinguishing_id != self.distinguishing_id:
            raise EnvelopeInvalid(
                f"envelope: signer ID {envelope.distinguishing_id!r} is not"
                f" {self.distinguishing_id!r}"
            )
        key.verify(message, envelope.signature)

    @property
    def distinguishing_id(self) -> str | None:
        """The signer ID the suite signs under (SM2 only)."""
        return None

    def _require_own(self, suite: str, what: str) -> None:
        if suite != self.name:
            kind = EnvelopeInvalid if what == "envelope" else KeyInvalid
            raise kind(f"{what} belongs to suite {suite!r}, not {self.name!r}")


def _bound_data(envelope: EncryptedEnvelope, associated_data: bytes) -> bytes:
    header = header_bytes(envelope)
    return len(header).to_bytes(4, "big") + header + associated_data
