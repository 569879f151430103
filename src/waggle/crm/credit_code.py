"""The unified social credit code (统一社会信用代码) of GB 32100-2015.

Eighteen characters from a 31-symbol alphabet (digits and capitals without
I, O, S, V, Z); the last is a check character over the first seventeen with
weights 3^i mod 31.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = tuple(pow(3, position, 31) for position in range(17))


def check_character(first_seventeen: str) -> str:
    """Return the check character for the first 17 characters of a code.

    Raises:
        ValueError: a character outside the alphabet or a wrong length.
    """
    if len(first_seventeen) != 17:
        raise ValueError("expected 17 characters")
    total = sum(
        ALPHABET.index(char) * weight
        for char, weight in zip(first_seventeen, WEIGHTS, strict=True)
    )
    return ALPHABET[(31 - total % 31) % 31]


def is_valid_credit_code(code: str) -> bool:
    """Return whether ``code`` is a well-formed code with a correct check character."""
    if len(code) != 18 or any(char not in ALPHABET for char in code):
        return False
    return check_character(code[:17]) == code[17]
