"""Unified social credit codes (统一社会信用代码) of the demo companies.

A code has 18 characters (GB 32100-2015): the registering authority (9 for
market regulation), the kind of entity (1 for an enterprise), the six-digit
administrative division code, the nine-character organisation code (GB 11714,
itself ending in a check character), and a final check character computed
over the first 17 with weights 3^i mod 31 in a 31-character alphabet that
leaves out I, O, S, V and Z.
"""

from __future__ import annotations

import random

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_WEIGHTS = tuple(pow(3, position, 31) for position in range(17))
_ORGANISATION_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def check_character(first17: str) -> str:
    """Return the 18th character for the first 17 characters of a code.

    Raises:
        ValueError: a character is outside the code's alphabet.
    """
    total = sum(
        ALPHABET.index(char) * weight
        for char, weight in zip(first17, _WEIGHTS, strict=True)
    )
    return ALPHABET[(31 - total % 31) % 31]


def organisation_check(body: str) -> str:
    """Return the check character of an eight-character organisation code body."""
    total = sum(
        _value(char) * weight
        for char, weight in zip(body, _ORGANISATION_WEIGHTS, strict=True)
    )
    remainder = 11 - total % 11
    return {10: "X", 11: "0"}.get(remainder, str(remainder))


def _value(char: str) -> int:
    return int(char) if char.isdigit() else ord(char) - ord("A") + 10


def is_valid(code: str) -> bool:
    """Return whether ``code`` has the shape and both check characters right."""
    if len(code) != 18 or any(char not in ALPHABET for char in code):
        return False
    body = code[8:16]
    return (
        organisation_check(body) == code[16] and check_character(code[:17]) == code[17]
    )


def make_credit_code(rng: random.Random, division_code: str) -> str:
    """Draw a valid code for an enterprise registered in ``division_code``."""
    body = "".join(rng.choice("0123456789") for _ in range(8))
    first17 = "91" + division_code + body + organisation_check(body)
    return first17 + check_character(first17)
