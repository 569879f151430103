"""Separation of duties (三权分立): role combinations, action-time checks, exports."""

from __future__ import annotations

from itertools import combinations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Org
from waggle.core.actor import Actor, system_actor
from waggle.core.errors import Conflict, PolicyDenied
from waggle.governance import authorize
from waggle.governance.duties import (
    EXPORT_PACKAGES,
    RULES,
    DutyConflict,
    approve_export,
    check_role_combination,
)
from waggle.governance.models import AuditEntry
from waggle.governance.policy import load_policy
from waggle.identity.models import Role, User, UserRole
from waggle.identity.service import actor_for_user, create_user, update_user

ALL_ROLES = sorted(role.value for role in Role)
ALL_SUBSETS = [
    frozenset(subset)
    for size in range(len(ALL_ROLES) + 1)
    for subset in combinations(ALL_ROLES, size)
]


def predicted_refusal(roles: frozenset[str]) -> bool:
    """The two rules, written out again as plain Python."""
    changes_policy_or_classification = "data_owner" in roles or "it_admin" in roles
    approves_exports = "compliance" in roles
    holds_keys = "it_admin" in roles
    reads_audit_unmasked = "compliance" in roles or "auditor" in roles
    return (changes_policy_or_classification and approves_exports) or (
        holds_keys and reads_audit_unmasked
    )


def test_refused_combinations_are_exactly_the_predicted_ones() -> None:
    """Over all 256 subsets of the 8 roles, exactly the rule-breaking ones conflict."""
    expected = {roles for roles in ALL_SUBSETS if predicted_refusal(roles)}

    refused = {roles for roles in ALL_SUBSETS if check_role_combination(roles)}

    assert len(ALL_SUBSETS) == 256
    assert refused == expected
    assert len(refused) == 128


def test_a_conflict_names_its_rule_its_roles_and_both_languages() -> None:
    """IT admin plus compliance breaks both rules, each reported with its roles."""
    roles = {"it_admin", "compliance", "rep"}

    conflicts = check_role_combination(roles)

    assert [
        (conflict.rule, conflict.first_roles, conflict.second_roles)
        for conflict in conflicts
    ] == [
        ("define_vs_approve", ("it_admin",), ("compliance",)),
        ("keys_vs_audit", ("it_admin",), ("compliance",)),
    ]
    assert conflicts[1].message == (
        "whoever holds the keys (it_admin) may not read the audit log unmasked"
        " (compliance, auditor) / 掌管密钥的人（IT 管理员）不得查看未脱敏的审计日志"
        "（合规专员、审计员）"
    )


def test_rule_sides_are_the_roles_the_default_policy_empowers() -> None:
    """Each side of a rule holds exactly the roles the default policy empowers."""
    policy = load_policy(None)
    define = policy.roles_allowed("catalogue", "update") | policy.roles_allowed(
        "users", "update"
    )
    keys = policy.roles_allowed("audit", "checkpoint") | policy.roles_allowed(
        "field_keys", "create"
    )

    sides = {rule.code: (rule.first_roles, rule.second_roles) for rule in RULES}

    assert sides["define_vs_approve"][0] == define == {"data_owner", "it_admin"}
    assert sides["keys_vs_audit"][0] == keys == {"it_admin"}
    assert sides["keys_vs_audit"][1] == policy.roles_allowed("audit", "read")


def test_create_user_refuses_exactly_the_predicted_combinations(
    session: Session,
) -> None:
    """Creating users with every non-empty role set refuses exactly the breakers."""
    operator = system_actor("test")
    expected = {roles for roles in ALL_SUBSETS if roles and predicted_refusal(roles)}

    refused, codes = set(), set()
    for number, roles in enumerate(ALL_SUBSETS[1:]):
        try:
            create_user(
                session,
                operator,
                username=f"user{number}",
                password="long enough",
                roles=sorted(roles),
            )
        except Conflict as error:
            refused.add(roles)
            codes.add(error.code)
    session.flush()

    assert refused == expected
    assert codes == {"separation_of_duties"}
    assert session.scalar(select(User.id).where(User.username == "user254")) is None
    assert len(session.scalars(select(User.id)).all()) == 255 - 128


def test_create_user_message_is_bilingual_and_names_the_user(session: Session) -> None:
    """The refusal names the user, the roles and the reasons in English and Chinese."""
    operator = system_actor("test")

    with pytest.raises(Conflict) as caught:
        create_user(
            session,
            operator,
            username="王五",
            password="long enough",
            roles=["data_owner", "compliance"],
        )

    assert caught.value.message == (
        "user 王五: roles ['compliance', 'data_owner'] break separation of duties:"
        " whoever changes a policy or a classification (data_owner, it_admin) may"
        " not approve exports (compliance) / 修改策略或数据分级的人（数据所有者、"
        "IT 管理员）不得审批导出（合规专员）"
    )
    assert caught.value.details == {"rules": ["define_vs_approve"]}


def test_update_user_refuses_adding_a_conflicting_role(
    session: Session, org: Org
) -> None:
    """Giving the compliance officer the IT admin role is refused; roles stay put."""
    user_id = org.actors["compliance"].user_id
    assert user_id is not None

    with pytest.raises(Conflict) as caught:
        update_user(
            session,
            org.actors["admin"],
            user_id,
            {"roles": ["compliance", "it_admin"]},
        )

    assert caught.value.code == "separation_of_duties"
    session.rollback()
    assert session.get(User, user_id).role_names == ["compliance"]  # type: ignore[union-attr]


def test_update_user_accepts_a_compatible_role_change(
    session: Session, org: Org
) -> None:
    """An auditor may also become a rep: no rule keeps those apart."""
    user_id = org.actors["auditor"].user_id
    assert user_id is not None

    user = update_user(
        session, org.actors["admin"], user_id, {"roles": ["auditor", "rep"]}
    )

    assert user.role_names == ["auditor", "rep"]


def test_authorize_refuses_audit_reading_to_a_hand_edited_conflicting_user(
    session: Session, org: Org
) -> None:
    """A compliance officer given it_admin in the database cannot read the audit."""
    user_id = org.actors["compliance"].user_id
    session.add(UserRole(user_id=user_id, role="it_admin"))
    session.commit()
    user = session.get(User, user_id)
    assert user is not None
    session.refresh(user)

    with pytest.raises(PolicyDenied) as caught:
        authorize(session, actor_for_user(user), "read", "audit")

    assert caught.value.code == "separation_of_duties"
    assert (caught.value.action, caught.value.resource) == ("read", "audit")
    assert authorize(session, org.actors["compliance"], "read", "audit") == "all"


def test_authorize_leaves_untouched_rules_alone() -> None:
    """An IT admin who is also an auditor may still create users: rule 1 holds."""
    actor = Actor(
        user_id=None, username="dual", roles=frozenset({"it_admin", "auditor"})
    )

    scope = authorize(None, actor, "create", "users")  # type: ignore[arg-type]

    assert scope == "all"


def test_authorize_refuses_key_work_to_an_admin_who_reads_audit() -> None:
    """An IT admin who is also an auditor may not sign an audit checkpoint."""
    actor = Actor(
        user_id=None, username="dual", roles=frozenset({"it_admin", "auditor"})
    )

    with pytest.raises(PolicyDenied) as caught:
        authorize(None, actor, "checkpoint", "audit")  # type: ignore[arg-type]

    assert caught.value.code == "separation_of_duties"


def test_approve_export_records_the_approval(session: Session, org: Org) -> None:
    """A compliance officer approving a manager's export leaves one audit row."""
    exporter, approver = org.actors["manager_a"], org.actors["compliance"]

    approve_export(session, approver, exporter=exporter, package_id="exp-1")
    session.commit()

    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.resource == EXPORT_PACKAGES)
    ).one()
    assert (entry.username, entry.action, entry.record_ids, entry.detail) == (
        "compliance",
        "approve",
        ["exp-1"],
        "exporter=manager_a",
    )


def test_approve_export_refuses_the_exporter_approving_their_own_export() -> None:
    """Exporter and approver are the same login: separation of duties refuses."""
    officer = Actor(user_id=7, username="Li Lei", roles=frozenset({"compliance"}))

    with pytest.raises(PolicyDenied) as caught:
        approve_export(None, officer, exporter=officer, package_id="exp-2")  # type: ignore[arg-type]

    assert caught.value.code == "separation_of_duties"
    assert caught.value.message == (
        "export exp-2: Li Lei cannot both export and approve (separation of duties)"
    )


def test_approve_export_refuses_a_same_named_person() -> None:
    """Two spellings of one name count as one person, as in signed packages."""
    exporter = Actor(user_id=3, username="li  lei", roles=frozenset({"manager"}))
    officer = Actor(user_id=7, username="Li Lei", roles=frozenset({"compliance"}))

    with pytest.raises(PolicyDenied) as caught:
        approve_export(None, officer, exporter=exporter, package_id="exp-3")  # type: ignore[arg-type]

    assert caught.value.code == "separation_of_duties"


def test_approve_export_refuses_an_approver_whose_roles_conflict() -> None:
    """A compliance officer who is also a data owner may not approve any export."""
    exporter = Actor(user_id=3, username="manager", roles=frozenset({"manager"}))
    officer = Actor(
        user_id=7, username="officer", roles=frozenset({"compliance", "data_owner"})
    )

    with pytest.raises(PolicyDenied) as caught:
        approve_export(None, officer, exporter=exporter, package_id="exp-4")  # type: ignore[arg-type]

    assert caught.value.code == "separation_of_duties"
    assert caught.value.message == (
        "officer may not approve export_packages: their roles break separation of"
        " duties: whoever changes a policy or a classification (data_owner,"
        " it_admin) may not approve exports (compliance) / 修改策略或数据分级的人"
        "（数据所有者、IT 管理员）不得审批导出（合规专员）"
    )


def test_approve_export_refuses_a_non_compliance_approver() -> None:
    """Only compliance officers approve exports."""
    exporter = Actor(user_id=3, username="manager", roles=frozenset({"manager"}))
    director = Actor(user_id=8, username="director", roles=frozenset({"director"}))

    with pytest.raises(PolicyDenied) as caught:
        approve_export(None, director, exporter=exporter, package_id="exp-5")  # type: ignore[arg-type]

    assert caught.value.code == "policy_denied"


def test_sound_role_sets_have_no_conflicts() -> None:
    """A sound set gives no conflict; a broken one gives DutyConflict values."""
    assert check_role_combination({"rep", "manager"}) == []
    assert isinstance(check_role_combination({"auditor", "it_admin"})[0], DutyConflict)
