"""Separation of duties (三权分立) between data owners, IT and compliance.

Three powers are kept apart:

- business data owners (``data_owner``) define what data means and how it is
  classified;
- IT administrators (``it_admin``) control technical settings and hold the
  keys: they deploy the policy file, assign roles (``users.update`` in the
  default policy) and sign audit checkpoints (``audit.checkpoint``);
- compliance officers (``compliance``) approve exports and, with auditors
  (``auditor``), read the audit log unmasked (``audit.read``).

Two rules follow, checked when roles are assigned
(:func:`ensure_role_combination`) and again when a sensitive action runs
(:func:`ensure_duties_separated`, called by ``authorize``), so that a role
combination written into the database by hand is still refused:

1. whoever changes a policy or a classification does not approve exports;
2. whoever holds the keys does not read the audit log unmasked.

For one export, the exporter and the approving officer must also be two
people; :func:`approve_export` reuses the signer check of signed packages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.errors import Conflict, PolicyDenied

logger = logging.getLogger(__name__)

SEPARATION_OF_DUTIES = "separation_of_duties"
EXPORT_PACKAGES = "export_packages"
EXPORT_REQUESTS = "export_requests"
APPROVER_ROLES = frozenset({"compliance"})
_DEFINE_DUTY = "change a policy or a classification"
_APPROVE_DUTY = "approve an export"
_KEYS_DUTY = "hold the keys"
_AUDIT_DUTY = "read the audit log unmasked"


@dataclass(frozen=True)
class DutyRule:
    """Two sets of duties nobody may hold together, with their reasons."""

    code: str
    first_duty: str
    first_roles: frozenset[str]
    second_duty: str
    second_roles: frozenset[str]
    reason_en: str
    reason_zh: str


@dataclass(frozen=True)
class DutyConflict:
    """One rule a set of roles breaks, naming the roles on each side."""

    rule: str
    first_roles: tuple[str, ...]
    second_roles: tuple[str, ...]
    reason_en: str
    reason_zh: str

    @property
    def message(self) -> str:
        """Return the bilingual one-line reason, English then Chinese."""
        return f"{self.reason_en} / {self.reason_zh}"


RULES = (
    DutyRule(
        code="define_vs_approve",
        first_duty=_DEFINE_DUTY,
        first_roles=frozenset({"data_owner", "it_admin"}),
        second_duty=_APPROVE_DUTY,
        second_roles=frozenset({"compliance"}),
        reason_en=(
            "whoever changes a policy or a classification (data_owner, it_admin)"
            " may not approve exports (compliance)"
        ),
        reason_zh=(
            "修改策略或数据分级的人（数据所有者、IT 管理员）不得审批导出（合规专员）"
        ),
    ),
    DutyRule(
        code="keys_vs_audit",
        first_duty=_KEYS_DUTY,
        first_roles=frozenset({"it_admin"}),
        second_duty=_AUDIT_DUTY,
        second_roles=frozenset({"compliance", "auditor"}),
        reason_en=(
            "whoever holds the keys (it_admin) may not read the audit log unmasked"
            " (compliance, auditor)"
        ),
        reason_zh=(
            "掌管密钥的人（IT 管理员）不得查看未脱敏的审计日志（合规专员、审计员）"
        ),
    ),
)

# The actions that exercise one side of a rule. An actor whose roles break
# that rule is refused them even when a role alone would allow the action.
# Assigning roles (users) changes who may do what, so it counts as a change
# of policy; the catalogue holds the classification; field_keys are the data
# keys of field encryption.
SENSITIVE_ACTIONS: dict[tuple[str, str], str] = {
    ("audit", "read"): _AUDIT_DUTY,
    ("audit", "checkpoint"): _KEYS_DUTY,
    ("field_keys", "create"): _KEYS_DUTY,
    ("field_keys", "update"): _KEYS_DUTY,
    ("field_keys", "delete"): _KEYS_DUTY,
    ("users", "create"): _DEFINE_DUTY,
    ("users", "update"): _DEFINE_DUTY,
    ("catalogue", "create"): _DEFINE_DUTY,
    ("catalogue", "update"): _DEFINE_DUTY,
    ("catalogue", "delete"): _DEFINE_DUTY,
    (EXPORT_PACKAGES, "approve"): _APPROVE_DUTY,
    (EXPORT_REQUESTS, "approve"): _APPROVE_DUTY,
}


def check_role_combination(roles: Iterable[str]) -> list[DutyConflict]:
    """Return every separation-of-duties rule that ``roles`` held together break."""
    held = frozenset(roles)
    found = []
    for rule in RULES:
        first, second = held & rule.first_roles, held & rule.second_roles
        if first and second:
            found.append(
                DutyConflict(
                    rule=rule.code,
                    first_roles=tuple(sorted(first)),
                    second_roles=tuple(sorted(second)),
                    reason_en=rule.reason_en,
                    reason_zh=rule.reason_zh,
                )
            )
    return found


def ensure_role_combination(roles: Iterable[str], *, username: str) -> None:
    """Refuse to give ``username`` roles that separation of duties keeps apart.

    Raises:
        Conflict: the roles break a rule (code ``separation_of_duties``).
    """
    roles = sorted(set(roles))
    conflicts = check_role_combination(roles)
    if conflicts:
        reasons = "; ".join(conflict.message for conflict in conflicts)
        raise Conflict(
            f"user {username}: roles {roles} break separation of duties: {reasons}",
            code=SEPARATION_OF_DUTIES,
            rules=[conflict.rule for conflict in conflicts],
        )


def ensure_duties_separated(actor: Actor, action: str, resource: str) -> None:
    """Refuse a sensitive action to an actor whose roles break a rule it touches.

    Raises:
        PolicyDenied: the actor's roles conflict (code ``separation_of_duties``).
    """
    duty = SENSITIVE_ACTIONS.get((resource, action))
    if duty is None:
        return
    touched = [
        conflict
        for conflict, rule in _conflicts_with_rules(actor.roles)
        if duty in (rule.first_duty, rule.second_duty)
    ]
    if touched:
        reasons = "; ".join(conflict.message for conflict in touched)
        raise PolicyDenied(
            f"{actor.username} may not {action} {resource}: their roles break"
            f" separation of duties: {reasons}",
            code=SEPARATION_OF_DUTIES,
            action=action,
            resource=resource,
        )


def approve_export(
    session: Session,
    approver: Actor,
    *,
    exporter: Actor,
    package_id: str,
    resource: str = EXPORT_PACKAGES,
    record_id: str | None = None,
) -> None:
    """Record ``approver``'s approval of ``exporter``'s export ``package_id``.

    The approver must hold an approving role, hold no conflicting role and be
    someone other than the exporter; the signed package checks the same pair
    again when the two sign it. ``resource`` and ``record_id`` name what the
    audit row of the approval is about (default: the package itself).

    Raises:
        PolicyDenied: the approver may not approve, or approves their own
            export (code ``separation_of_duties``).
    """
    from waggle.governance.guard import record_audit

    if not approver.roles & APPROVER_ROLES:
        raise PolicyDenied(
            f"{approver.username} may not approve export {package_id}: approving"
            f" needs one of {sorted(APPROVER_ROLES)}",
            action="approve",
            resource=resource,
            record_ids=(record_id or package_id,),
        )
    ensure_duties_separated(approver, "approve", resource)
    violation = _same_person_violation(exporter, approver)
    if violation:
        raise PolicyDenied(
            f"export {package_id}: {violation}",
            code=SEPARATION_OF_DUTIES,
            action="approve",
            resource=resource,
            record_ids=(record_id or package_id,),
        )
    record_audit(
        session,
        approver,
        action="approve",
        resource=resource,
        record_ids=[record_id or package_id],
        detail=f"exporter={exporter.username}"
        + ("" if record_id is None else f"; package={package_id}"),
    )
    logger.info(
        "export approved",
        extra={"package_id": package_id, "approver": approver.username},
    )


def _same_person_violation(exporter: Actor, approver: Actor) -> str | None:
    # The signed package's own rule, so a pair refused here is refused there;
    # its key check runs when the two sign. One user id is one person.
    from waggle.governance.packages import (
        COMPLIANCE_OFFICER,
        EXPORTER,
        _separation_violation,
    )

    is_same_user = exporter.user_id is not None and exporter.user_id == approver.user_id
    approver_name = exporter.username if is_same_user else approver.username
    return _separation_violation(
        [
            (EXPORTER, exporter.username, "exporter-key"),
            (COMPLIANCE_OFFICER, approver_name, "approver-key"),
        ]
    )


def _conflicts_with_rules(
    roles: Iterable[str],
) -> list[tuple[DutyConflict, DutyRule]]:
    by_code = {rule.code: rule for rule in RULES}
    return [(found, by_code[found.rule]) for found in check_role_combination(roles)]
