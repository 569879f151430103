"""SM2 signatures (GB/T 32918.2) with SM3, interoperable with OpenSSL 3.

`gmssl` does the curve arithmetic; Waggle does everything around it that an
interoperable signature needs: the signer's identity digest
``Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)``, the message digest
``e = SM3(Z || M)``, the secret nonce ``k`` (always from :mod:`secrets`; gmssl's
own fallback uses :mod:`random`), range and curve checks gmssl leaves out, DER
signatures and PKCS#8 / SubjectPublicKeyInfo keys with the SM2 curve OID.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes

# gmssl ships no type information; its two calls are wrapped below.
from gmssl.sm2 import CryptSM2  # type: ignore[import-untyped]

from waggle.governance.crypto import _der
from waggle.governance.crypto.errors import KeyInvalid, SignatureInvalid

SM2_CURVE_OID = "1.2.156.10197.1.301"
EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
DEFAULT_DISTINGUISHING_ID = b"1234567812345678"
ALGORITHM = "SM2-with-SM3"
MAX_SIGN_ATTEMPTS = 8


@dataclass(frozen=True)
class Curve:
    """Short Weierstrass curve parameters y² = x³ + ax + b over GF(p)."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", (self.p.bit_length() + 7) // 8)

    def contains(self, x: int, y: int) -> bool:
        """Tell whether (x, y) is an affine point of the curve."""
        if not (0 <= x < self.p and 0 <= y < self.p):
            return False
        return (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0

    def gmssl_table(self) -> dict[str, str]:
        width = 2 * self.size
        return {
            "n": f"{self.n:0{width}x}",
            "p": f"{self.p:0{width}x}",
            "g": f"{self.gx:0{width}x}{self.gy:0{width}x}",
            "a": f"{self.a:0{width}x}",
            "b": f"{self.b:0{width}x}",
        }


# The recommended curve of GB/T 32918.5 (OpenSSL's "SM2").
SM2_P256 = Curve(
    name="sm2p256v1",
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


def sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def identity_digest(
    curve: Curve, point: tuple[int, int], distinguishing_id: bytes
) -> bytes:
    """Return Z, the SM3 digest binding the signer's ID and key to the curve.

    Raises:
        KeyInvalid: the ID is longer than ENTL's two bytes can count.
    """
    bits = 8 * len(distinguishing_id)
    if bits > 0xFFFF:
        raise KeyInvalid("SM2 distinguishing ID: longer than 8191 bytes")
    numbers = (curve.a, curve.b, curve.gx, curve.gy, *point)
    fields = b"".join(value.to_bytes(curve.size, "big") for value in numbers)
    return sm3(bits.to_bytes(2, "big") + distinguishing_id + fields)


def message_digest(
    curve: Curve, point: tuple[int, int], message: bytes, distinguishing_id: bytes
) -> bytes:
    """Return e = SM3(Z || M), the value SM2 actually signs."""
    return sm3(identity_digest(curve, point, distinguishing_id) + message)


def sign_digest(curve: Curve, secret: int, digest: bytes, k: int) -> tuple[int, int]:
    """Return (r, s) for ``digest`` with nonce ``k``; callers pass a secret ``k``.

    Exposed for known-answer tests, which need the standard's fixed ``k``.

    Raises:
        SignatureInvalid: this ``k`` yields r = 0, r + k = n or s = 0; draw another.
    """
    engine = CryptSM2(
        private_key=f"{secret:064x}", public_key="", ecc_table=_table(curve)
    )
    result: str | None = engine.sign(digest, f"{k:064x}")
    if result is None:
        raise SignatureInvalid("SM2 nonce gives a degenerate signature")
    return int(result[:64], 16), int(result[64:], 16)


def verify_digest(
    curve: Curve, point: tuple[int, int], digest: bytes, r: int, s: int
) -> bool:
    """Tell whether (r, s) is a valid signature of ``digest`` under ``point``."""
    if not (1 <= r < curve.n and 1 <= s < curve.n) or (r + s) % curve.n == 0:
        return False
    engine = CryptSM2(private_key="", public_key="", ecc_table=_table(curve))
    # Set directly: gmssl's constructor strips any leading '0'/'4' characters.
    engine.public_key = _point_hex(curve, point)
    try:
        return bool(engine.verify(f"{r:064x}{s:064x}", digest))
    except (TypeError, ValueError):  # a sum at infinity; no valid signature does it
        return False


def _table(curve: Curve) -> dict[str, str]:
    if curve.size != 32:
        raise KeyInvalid(f"SM2 curve {curve.name}: only 256-bit curves are supported")
    return curve.gmssl_table()


def _point_hex(curve: Curve, point: tuple[int, int]) -> str:
    width = 2 * curve.size
    return f"{point[0]:0{width}x}{point[1]:0{width}x}"


def _multiply_generator(curve: Curve, scalar: int) -> tuple[int, int]:
    engine = CryptSM2(private_key="", public_key="", ecc_table=_table(curve))
    result: Any = engine._kg(scalar, curve.gmssl_table()["g"])
    width = 2 * curve.size
    return int(result[:width], 16), int(result[width:], 16)


def encode_signature(r: int, s: int) -> bytes:
    """Return the DER SEQUENCE { r INTEGER, s INTEGER } OpenSSL reads."""
    return _der.encode_sequence(_der.encode_integer(r), _der.encode_integer(s))


def decode_signature(signature: bytes) -> tuple[int, int]:
    """Return (r, s) from a strict DER signature.

    Raises:
        SignatureInvalid: the bytes are not a DER SEQUENCE of two integers.
    """
    try:
        outer = _der.Reader(signature, "SM2 signature")
        body = outer.nested(_der.SEQUENCE)
        outer.expect_end()
        r, s = body.read_integer(), body.read_integer()
        body.expect_end()
    except KeyInvalid as exc:
        raise SignatureInvalid(exc.message) from exc
    return r, s


@dataclass(frozen=True)
class Sm2PublicKey:
    """An SM2 public key: a point of the curve other than infinity."""

    x: int
    y: int
    curve: Curve = SM2_P256
    suite = "gm"
    algorithm = ALGORITHM

    def __post_init__(self) -> None:
        if not self.curve.contains(self.x, self.y):
            raise KeyInvalid("SM2 public key: point is not on the curve")

    @property
    def point(self) -> tuple[int, int]:
        return self.x, self.y

    def verify(
        self,
        message: bytes,
        signature: bytes,
        *,
        distinguishing_id: bytes = DEFAULT_DISTINGUISHING_ID,
    ) -> None:
        """Check a DER signature of ``message`` made with ``distinguishing_id``.

        Raises:
            SignatureInvalid: malformed, or not made by this key over this message
                and ID.
        """
        r, s = decode_signature(signature)
        digest = message_digest(self.curve, self.point, message, distinguishing_id)
        if not verify_digest(self.curve, self.point, digest, r, s):
            raise SignatureInvalid("SM2 signature does not verify")

    def encoded_point(self) -> bytes:
        size = self.curve.size
        return b"\x04" + self.x.to_bytes(size, "big") + self.y.to_bytes(size, "big")

    def spki_der(self) -> bytes:
        """Return the SubjectPublicKeyInfo OpenSSL writes for SM2 keys."""
        _require_standard_curve(self.curve)
        return _der.encode_sequence(
            _algorithm_identifier(), _der.encode_bit_string(self.encoded_point())
        )

    def public_pem(self) -> bytes:
        return _der.pem_encode("PUBLIC KEY", self.spki_der())

    @classmethod
    def from_spki_der(cls, der: bytes) -> Sm2PublicKey:
        """Parse a SubjectPublicKeyInfo holding an SM2 key.

        Raises:
            KeyInvalid: not an SM2 key, or not on the curve.
        """
        outer = _der.Reader(der, "SM2 public key")
        body = outer.nested(_der.SEQUENCE)
        outer.expect_end()
        _read_algorithm_identifier(body.nested(_der.SEQUENCE))
        point = body.read_bit_string()
        body.expect_end()
        return cls.from_encoded_point(point)

    @classmethod
    def from_encoded_point(cls, point: bytes, curve: Curve = SM2_P256) -> Sm2PublicKey:
        size = curve.size
        if len(point) != 1 + 2 * size or point[0] != 4:
            raise KeyInvalid("SM2 public key: expected an uncompressed point")
        x = int.from_bytes(point[1 : 1 + size], "big")
        return cls(x, int.from_bytes(point[1 + size :], "big"), curve)

    @classmethod
    def from_pem(cls, pem: bytes) -> Sm2PublicKey:
        """Parse a ``PUBLIC KEY`` PEM block.

        Raises:
            KeyInvalid: another block, another algorithm, or a bad point.
        """
        label, der = _der.pem_decode(pem, "SM2 public key")
        if label != "PUBLIC KEY":
            raise KeyInvalid(f"SM2 public key: expected PUBLIC KEY, found {label}")
        return cls.from_spki_der(der)


@dataclass(frozen=True, repr=False)
class Sm2PrivateKey:
    """An SM2 private key d with 1 <= d <= n - 2 and its public key."""

    secret: int
    curve: Curve = SM2_P256
    public: Sm2PublicKey = field(init=False)
    suite = "gm"
    algorithm = ALGORITHM

    def __post_init__(self) -> None:
        if not 1 <= self.secret <= self.curve.n - 2:
            raise KeyInvalid("SM2 private key: scalar outside [1, n - 2]")
        x, y = _multiply_generator(self.curve, self.secret)
        object.__setattr__(self, "public", Sm2PublicKey(x, y, self.curve))

    def __repr__(self) -> str:
        return f"Sm2PrivateKey(public=({self.public.x:x}, {self.public.y:x}))"

    @classmethod
    def generate(cls, curve: Curve = SM2_P256) -> Sm2PrivateKey:
        return cls(secrets.randbelow(curve.n - 2) + 1, curve)

    def public_key(self) -> Sm2PublicKey:
        return self.public

    def sign(
        self, message: bytes, *, distinguishing_id: bytes = DEFAULT_DISTINGUISHING_ID
    ) -> bytes:
        """Return the DER SM2 signature of ``message`` under ``distinguishing_id``.

        The nonce k is drawn from :mod:`secrets` for every attempt.
        """
        digest = message_digest(
            self.curve, self.public.point, message, distinguishing_id
        )
        for _attempt in range(MAX_SIGN_ATTEMPTS):
            nonce = secrets.randbelow(self.curve.n - 1) + 1
            try:
                return encode_signature(
                    *sign_digest(self.curve, self.secret, digest, nonce)
                )
            except SignatureInvalid:
                continue
        raise SignatureInvalid("SM2 signing failed: no usable nonce was drawn")

    def private_pem(self) -> bytes:
        """Return the PKCS#8 ``PRIVATE KEY`` PEM OpenSSL writes for SM2."""
        _require_standard_curve(self.curve)
        inner = _der.encode_sequence(
            _der.encode_integer(1),
            _der.encode(
                _der.OCTET_STRING, self.secret.to_bytes(self.curve.size, "big")
            ),
            _der.encode(
                _der.context_tag(1),
                _der.encode_bit_string(self.public.encoded_point()),
            ),
        )
        der = _der.encode_sequence(
            _der.encode_integer(0),
            _algorithm_identifier(),
            _der.encode(_der.OCTET_STRING, inner),
        )
        return _der.pem_encode("PRIVATE KEY", der)

    @classmethod
    def from_pem(cls, pem: bytes) -> Sm2PrivateKey:
        """Parse PKCS#8 ``PRIVATE KEY`` or SEC 1 ``EC PRIVATE KEY`` (unencrypted).

        Raises:
            KeyInvalid: encrypted, another algorithm, or inconsistent.
        """
        label, der = _der.pem_decode(pem, "SM2 private key")
        if label == "PRIVATE KEY":
            outer = _der.Reader(der, "SM2 private key")
            body = outer.nested(_der.SEQUENCE)
            outer.expect_end()
            if body.read_integer() != 0:
                raise KeyInvalid("SM2 private key: unsupported PKCS#8 version")
            _read_algorithm_identifier(body.nested(_der.SEQUENCE))
            inner = body.read(_der.OCTET_STRING)
            return _from_ec_private_key(inner, curve_known=True)
        if label == "EC PRIVATE KEY":
            return _from_ec_private_key(der, curve_known=False)
        raise KeyInvalid(f"SM2 private key: expected PRIVATE KEY, found {label}")


def _from_ec_private_key(der: bytes, *, curve_known: bool) -> Sm2PrivateKey:
    outer = _der.Reader(der, "SM2 private key")
    body = outer.nested(_der.SEQUENCE)
    outer.expect_end()
    if body.read_integer() != 1:
        raise KeyInvalid("SM2 private key: unsupported ECPrivateKey version")
    secret = body.read(_der.OCTET_STRING)
    if body.peek_tag() == _der.context_tag(0):
        parameters = body.nested(_der.context_tag(0))
        if parameters.read_oid() != SM2_CURVE_OID:
            raise KeyInvalid("SM2 private key: curve is not SM2")
        curve_known = True
    if not curve_known:
        raise KeyInvalid("SM2 private key: curve is not named")
    key = Sm2PrivateKey(int.from_bytes(secret, "big"))
    if body.peek_tag() == _der.context_tag(1):
        stated = body.nested(_der.context_tag(1)).read_bit_string()
        if stated != key.public.encoded_point():
            raise KeyInvalid("SM2 private key: embedded public key does not match")
    body.expect_end()
    return key


def _algorithm_identifier() -> bytes:
    return _der.encode_sequence(
        _der.encode_oid(EC_PUBLIC_KEY_OID), _der.encode_oid(SM2_CURVE_OID)
    )


def _read_algorithm_identifier(reader: _der.Reader) -> None:
    algorithm = reader.read_oid()
    if algorithm not in (EC_PUBLIC_KEY_OID, SM2_CURVE_OID):
        raise KeyInvalid(f"SM2 key: algorithm {algorithm} is not elliptic-curve")
    if reader.peek_tag() == _der.OBJECT_IDENTIFIER:
        curve = reader.read_oid()
        if curve != SM2_CURVE_OID:
            raise KeyInvalid(f"SM2 key: curve {curve} is not SM2")
    elif algorithm != SM2_CURVE_OID:
        raise KeyInvalid("SM2 key: curve is not named")
    reader.expect_end()


def _require_standard_curve(curve: Curve) -> None:
    if curve != SM2_P256:
        raise KeyInvalid(f"SM2 key on {curve.name}: only sm2p256v1 keys are encoded")
