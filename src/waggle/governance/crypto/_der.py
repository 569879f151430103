"""The sliver of ASN.1 DER and PEM that SM2 keys and signatures need.

SM2 keys travel in the same containers OpenSSL uses for every elliptic curve
(PKCS#8, SEC 1, SubjectPublicKeyInfo), but `cryptography` refuses the SM2
curve, so Waggle encodes and parses those few structures itself. Parsing is
strict DER: definite minimal lengths, minimal integers, no trailing bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from waggle.governance.crypto.errors import KeyInvalid

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30


def context_tag(number: int, *, constructed: bool = True) -> int:
    """Return the identifier octet of context-specific tag ``[number]``."""
    return 0x80 | (0x20 if constructed else 0) | number


def encode(tag: int, content: bytes) -> bytes:
    """Return one DER element: tag, minimal length, content."""
    return bytes([tag]) + _encode_length(len(content)) + content


def encode_integer(value: int) -> bytes:
    """Return a non-negative INTEGER in its minimal two's-complement form."""
    if value < 0:
        raise ValueError("only non-negative integers are encoded")
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return encode(INTEGER, body)


def encode_sequence(*elements: bytes) -> bytes:
    return encode(SEQUENCE, b"".join(elements))


def encode_bit_string(payload: bytes) -> bytes:
    """Return a BIT STRING of whole bytes (no unused bits)."""
    return encode(BIT_STRING, b"\x00" + payload)


def encode_oid(dotted: str) -> bytes:
    """Return an OBJECT IDENTIFIER element for ``dotted`` (e.g. ``1.2.156``)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode(OBJECT_IDENTIFIER, bytes(body))


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


@dataclass
class Reader:
    """Read DER elements one after another from ``data``.

    Every malformation raises :class:`KeyInvalid` naming ``what`` is parsed.
    """

    data: bytes
    what: str
    position: int = 0

    def at_end(self) -> bool:
        return self.position == len(self.data)

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self.data[self.position]

    def read(self, tag: int) -> bytes:
        """Return the content of the next element, which must carry ``tag``."""
        if self.peek_tag() != tag:
            raise self._error(f"expected tag 0x{tag:02x}")
        length, start = self._read_length(self.position + 1)
        end = start + length
        if end > len(self.data):
            raise self._error("element runs past the end")
        self.position = end
        return self.data[start:end]

    def read_integer(self) -> int:
        """Return the next INTEGER, which must be non-negative and minimal."""
        body = self.read(INTEGER)
        if not body or body[0] & 0x80:
            raise self._error("integer is empty or negative")
        if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
            raise self._error("integer is not minimally encoded")
        return int.from_bytes(body, "big")

    def read_oid(self) -> str:
        """Return the next OBJECT IDENTIFIER in dotted form."""
        body = self.read(OBJECT_IDENTIFIER)
        arcs: list[int] = []
        value = 0
        for index, octet in enumerate(body):
            if value == 0 and octet == 0x80:
                raise self._error("object identifier is not minimally encoded")
            value = (value << 7) | (octet & 0x7F)
            if not octet & 0x80:
                arcs.append(value)
                value = 0
            elif index == len(body) - 1:
                raise self._error("object identifier is truncated")
        if not arcs:
            raise self._error("object identifier is empty")
        first = min(arcs[0] // 40, 2)
        return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])

    def read_bit_string(self) -> bytes:
        """Return the bytes of the next BIT STRING, which must use whole bytes."""
        body = self.read(BIT_STRING)
        if not body or body[0] != 0:
            raise self._error("bit string does not hold whole bytes")
        return body[1:]

    def nested(self, tag: int, what: str | None = None) -> Reader:
        """Return a reader over the content of the next element with ``tag``."""
        return Reader(self.read(tag), what or self.what)

    def expect_end(self) -> None:
        if not self.at_end():
            raise self._error("unexpected trailing bytes")

    def _read_length(self, offset: int) -> tuple[int, int]:
        if offset >= len(self.data):
            raise self._error("length is missing")
        first = self.data[offset]
        if first < 0x80:
            return first, offset + 1
        count = first & 0x7F
        body = self.data[offset + 1 : offset + 1 + count]
        if count == 0 or count > 4 or len(body) != count or body[0] == 0:
            raise self._error("length is not minimal definite DER")
        length = int.from_bytes(body, "big")
        if length < 0x80:
            raise self._error("length is not minimally encoded")
        return length, offset + 1 + count

    def _error(self, reason: str) -> KeyInvalid:
        return KeyInvalid(f"{self.what}: {reason} at byte {self.position}")


_PEM = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=\s]*?)\s*-----END \1-----"
)


def pem_encode(label: str, der: bytes) -> bytes:
    """Wrap ``der`` in PEM armour with 64-character lines."""
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    header = f"-----BEGIN {label}-----\n".encode()
    footer = f"-----END {label}-----\n".encode()
    return header + b"\n".join(lines) + b"\n" + footer


def pem_decode(pem: bytes, what: str) -> tuple[str, bytes]:
    """Return the label and DER bytes of the first PEM block in ``pem``.

    Raises:
        KeyInvalid: no PEM block, or its body is not base64.
    """
    match = _PEM.search(pem)
    if match is None:
        raise KeyInvalid(f"{what}: no PEM block found")
    try:
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except binascii.Error as exc:
        raise KeyInvalid(f"{what}: PEM body is not base64") from exc
    return match.group(1).decode("ascii"), der
