"""The ``gm`` suite (国密): SM3, SM4-GCM and SM2 signatures with SM3.

SM2 signs under the standard signer ID ``1234567812345678`` (GM/T 0009), the
ID OpenSSL takes with ``-sigopt distid:1234567812345678``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from waggle.governance.crypto.base import Suite
from waggle.governance.crypto.errors import DecryptionFailed
from waggle.governance.crypto.sm2 import (
    ALGORITHM,
    DEFAULT_DISTINGUISHING_ID,
    Sm2PrivateKey,
    Sm2PublicKey,
)

TAG_SIZE = 16


class GmSuite(Suite):
    """SM3 hashes, SM4-GCM encryption, SM2-with-SM3 signatures."""

    name = "gm"
    hash_algorithm = "SM3"
    cipher_algorithm = "SM4-GCM"
    signature_algorithm = ALGORITHM
    secret_key_size = 16
    fingerprint_prefix = "sm3"

    def new_hash(self) -> hashes.Hash:
        return hashes.Hash(hashes.SM3())

    def generate_signing_key(self) -> Sm2PrivateKey:
        return Sm2PrivateKey.generate()

    def load_signing_key(self, pem: bytes) -> Sm2PrivateKey:
        return Sm2PrivateKey.from_pem(pem)

    def load_verifying_key(self, pem: bytes) -> Sm2PublicKey:
        return Sm2PublicKey.from_pem(pem)

    def seal(
        self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes
    ) -> bytes:
        encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(associated_data)
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return ciphertext + encryptor.tag

    def open(
        self, key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes
    ) -> bytes:
        if len(sealed) < TAG_SIZE:
            raise DecryptionFailed("SM4-GCM: ciphertext is shorter than its tag")
        ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
        decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(associated_data)
        try:
            return decryptor.update(ciphertext) + decryptor.finalize()
        except InvalidTag as exc:
            raise DecryptionFailed(
                "SM4-GCM: authentication tag does not match"
            ) from exc

    @property
    def distinguishing_id(self) -> str:
        return DEFAULT_DISTINGUISHING_ID.decode("ascii")
