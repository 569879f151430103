"""Errors of the rules context, each under one kind of ``waggle.core.errors``."""

from __future__ import annotations

from waggle.core.errors import InvalidInput


class RuleInvalid(InvalidInput):
    """A rule does not follow the rule language; the message says where."""

    code = "rule_invalid"


__all__ = ["RuleInvalid"]
