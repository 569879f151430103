"""Unified social credit codes: check characters per GB 32100-2015."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from waggle.crm.credit_code import ALPHABET, check_character, is_valid_credit_code
from waggle.crm.schemas import AccountCreate

PUBLISHED = ["91350100M000100Y43", "91440300708461136T"]


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    """Codes printed on real business licences pass the check."""
    assert is_valid_credit_code(code)


@given(st.text(alphabet=ALPHABET, min_size=17, max_size=17), st.data())
def test_any_single_substitution_is_detected(body: str, data: st.DataObject) -> None:
    """Changing any one character of a valid code makes it invalid."""
    code = body + check_character(body)
    position = data.draw(st.integers(0, 17))
    replacement = data.draw(
        st.sampled_from(ALPHABET).filter(lambda c: c != code[position])
    )

    damaged = code[:position] + replacement + code[position + 1 :]

    assert is_valid_credit_code(code)
    assert not is_valid_credit_code(damaged)


def test_account_schema_names_a_bad_check_character() -> None:
    """The API refuses a code whose check character is wrong, saying so."""
    with pytest.raises(ValidationError, match="wrong check character"):
        AccountCreate(name="某公司", credit_code="91350100M000100Y44")
