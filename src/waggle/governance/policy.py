"""The access policy: which roles may act on which resources, and row scopes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources as package_files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from waggle.core.errors import InvalidInput

if TYPE_CHECKING:
    from waggle.governance.aggregates import AggregateRules
    from waggle.governance.masking import MaskingRules

SCOPE_ORDER = ("none", "own", "team", "region", "all")
ACTIONS = (
    "read",
    "create",
    "update",
    "delete",
    "import",
    "export",
    "verify",
    "checkpoint",
    "approve",
)


@dataclass(frozen=True)
class ResourceRule:
    """Who may perform each action on one resource, and whether rows have owners."""

    is_owned: bool
    allowed: dict[str, frozenset[str]]


@dataclass(frozen=True)
class Policy:
    """A loaded policy document."""

    row_scopes: dict[str, str]
    resources: dict[str, ResourceRule]
    version: str
    # Optional sections; None when the document has none (see masking.py and
    # aggregates.py for what applies then).
    masking: MaskingRules | None = None
    aggregates: AggregateRules | None = None

    def roles_allowed(self, resource: str, action: str) -> frozenset[str]:
        rule = self.resources.get(resource)
        return rule.allowed.get(action, frozenset()) if rule else frozenset()

    def widest_scope(self, roles: frozenset[str]) -> str:
        scopes = [self.row_scopes.get(role, "none") for role in roles]
        return max(scopes, key=SCOPE_ORDER.index, default="none")


def parse_policy(document: dict[str, Any], *, version: str) -> Policy:
    """Validate a policy document (as parsed from YAML) and build a :class:`Policy`.

    Raises:
        InvalidInput: a scope, action or section is not one Waggle knows.
    """
    row_scopes = dict(document.get("row_scopes") or {})
    for role, scope in row_scopes.items():
        if scope not in SCOPE_ORDER:
            raise InvalidInput(
                f"policy row_scopes.{role}: unknown scope {scope!r}, "
                f"expected one of {', '.join(SCOPE_ORDER)}"
            )
    resources: dict[str, ResourceRule] = {}
    for name, body in (document.get("resources") or {}).items():
        unknown = set(body) - {"owned", *ACTIONS}
        if unknown:
            raise InvalidInput(
                f"policy resources.{name}: unknown keys {sorted(unknown)}, "
                f"expected owned or one of {', '.join(ACTIONS)}"
            )
        allowed = {action: frozenset(body.get(action) or ()) for action in ACTIONS}
        resources[name] = ResourceRule(
            is_owned=bool(body.get("owned")), allowed=allowed
        )
    # Imported here: both modules read the loaded policy through the guard.
    from waggle.governance.aggregates import parse_aggregates
    from waggle.governance.masking import parse_masking

    return Policy(
        row_scopes=row_scopes,
        resources=resources,
        version=version,
        masking=parse_masking(document.get("masking")),
        aggregates=parse_aggregates(document.get("aggregates")),
    )


@lru_cache(maxsize=8)
def load_policy(path: Path | None = None) -> Policy:
    """Load the policy from ``path`` or the shipped default."""
    if path is None:
        text = (
            package_files.files("waggle.governance")
            .joinpath("default_policy.yaml")
            .read_text(encoding="utf-8")
        )
        version = "default"
    else:
        text = path.read_text(encoding="utf-8")
        version = path.name
    return parse_policy(yaml.safe_load(text) or {}, version=version)
