"""Lineage of figures: provenance, row filters, drill-down, replay, tampering."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, PolicyDenied
from waggle.crm.models import Opportunity
from waggle.crm.service import CONTACTS, OPPORTUNITIES
from waggle.governance.chain import create_checkpoint
from waggle.governance.crypto import get_suite
from waggle.governance.guard import active_policy
from waggle.governance.lineage import (
    FigureSpec,
    check_provenance,
    compute_figure,
    drill_down,
    evaluate,
    get_figure,
    policy_digest,
    replay_figure,
)
from waggle.governance.lineage_models import FieldEdit, FigureProvenance
from waggle.governance.models import AuditChainHead, AuditEntry
from waggle.governance.records import create_record, delete_record, update_record

SUM = FigureSpec(resource="opportunities", measure="sum:amount")


def _seed(sessions: sessionmaker[Session], org: Org) -> dict[str, int]:
    """Give rep_a1 two deals and rep_a2 and rep_w1 one each."""
    with transaction(sessions) as session:
        a1 = add_account(session, org.actors["rep_a1"], "上海星河机械有限公司")
        a2 = add_account(session, org.actors["rep_a2"], "杭州云帆科技股份有限公司")
        w1 = add_account(session, org.actors["rep_w1"], "成都天府软件有限公司")
        return {
            "a1_first": add_opportunity(
                session, org.actors["rep_a1"], a1, "二期产线改造", amount="1000.00"
            ),
            "a1_second": add_opportunity(
                session, org.actors["rep_a1"], a1, "备件采购", amount="250.50"
            ),
            "a2": add_opportunity(
                session, org.actors["rep_a2"], a2, "云平台采购", amount="300.00"
            ),
            "w1": add_opportunity(
                session, org.actors["rep_w1"], w1, "数据中心", amount="7000.00"
            ),
        }


def _compute(
    sessions: sessionmaker[Session], org: Org, username: str, spec: FigureSpec
) -> int:
    with transaction(sessions) as session:
        return compute_figure(
            session, org.actors[username], name="pipeline", spec=spec
        ).id


def test_provenance_names_query_actor_policy_chain_and_records(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A computed figure stores its query, actor, policy, chain position and ids."""
    deals = _seed(sessions, org)
    with transaction(sessions) as session:
        head = session.get(AuditChainHead, 1)
        assert head is not None
        seq_before = head.seq

    figure_id = _compute(sessions, org, "manager_a", SUM)

    with sessions() as session:
        figure = session.get(FigureProvenance, figure_id)
        assert figure is not None
        assert (figure.value, figure.username, figure.roles, figure.scope) == (
            "1550.50",
            "manager_a",
            "manager",
            "team",
        )
        assert figure.spec["measure"] == "sum:amount"
        assert figure.record_ids == [deals["a1_first"], deals["a1_second"], deals["a2"]]
        assert figure.policy_version == "default"
        assert figure.policy_digest == policy_digest(active_policy())
        assert figure.chain_seq == seq_before
        assert figure.checkpoint_id is None
        assert check_provenance(session, figure) == []


def test_provenance_names_the_last_signed_checkpoint(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """The audit checkpoint in force when the figure was computed is recorded."""
    _seed(sessions, org)
    suite = get_suite("intl")
    with transaction(sessions) as session:
        checkpoint = create_checkpoint(session, suite.generate_signing_key())
        assert checkpoint is not None
        expected = (checkpoint.id, checkpoint.seq_to)

    figure_id = _compute(sessions, org, "ops", SUM)

    with sessions() as session:
        figure = session.get(FigureProvenance, figure_id)
        assert figure is not None
        assert (figure.checkpoint_id, figure.checkpoint_seq) == expected
        assert figure.value == "8550.50"


def test_a_rep_figure_covers_only_their_own_records(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """The row filter of the actor's scope decides which records contribute."""
    deals = _seed(sessions, org)

    figure_id = _compute(
        sessions, org, "rep_a1", FigureSpec(resource="opportunities", measure="count")
    )

    with sessions() as session:
        figure = session.get(FigureProvenance, figure_id)
        assert figure is not None
        assert (figure.value, figure.record_ids, figure.scope) == (
            "2",
            [deals["a1_first"], deals["a1_second"]],
            "own",
        )


def test_computing_leaves_audit_rows_naming_the_figure(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """The read of the records and the stored provenance are both audited."""
    _seed(sessions, org)

    figure_id = _compute(sessions, org, "manager_a", SUM)

    with sessions() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.resource, AuditEntry.record_ids)
            .where(AuditEntry.username == "manager_a")
            .order_by(AuditEntry.seq)
        ).all()
        assert [tuple(row) for row in rows] == [
            ("create", "lineage", [str(figure_id)]),
            ("read", "opportunities", []),
        ]


def test_replay_after_a_change_reproduces_the_original_value(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Undoing later edits gives the stored value; a fresh compute the new one."""
    deals = _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)
    with transaction(sessions) as session:
        update_record(
            session,
            org.actors["rep_a1"],
            OPPORTUNITIES,
            deals["a1_first"],
            {"amount": Decimal("4000.00")},
        )

    with transaction(sessions) as session:
        replay = replay_figure(session, org.actors["manager_a"], figure_id)
        fresh = compute_figure(session, org.actors["manager_a"], name="p", spec=SUM)

    assert (replay.stored_value, replay.replayed_value, replay.is_reproduced) == (
        "1550.50",
        "1550.50",
        True,
    )
    assert (replay.edits_since, replay.current_value, replay.changed) == (
        1,
        "4550.50",
        [deals["a1_first"]],
    )
    assert (replay.is_current, fresh.value) == (False, "4550.50")


def test_replay_rebuilds_a_record_deleted_and_one_reassigned_since(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A deletion keeps the deleted values, so the figure is still reproduced."""
    deals = _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)
    with transaction(sessions) as session:
        delete_record(session, org.actors["manager_a"], OPPORTUNITIES, deals["a2"])
        update_record(
            session,
            org.actors["ops"],
            OPPORTUNITIES,
            deals["a1_second"],
            {"owner_id": org.employees["rep_w1"]},
        )

    with transaction(sessions) as session:
        replay = replay_figure(session, org.actors["manager_a"], figure_id)

    assert (replay.replayed_value, replay.is_reproduced, replay.current_value) == (
        "1550.50",
        True,
        "1000.00",
    )
    assert (replay.removed, replay.hidden_differences) == ([], 2)


def test_replay_reports_records_added_since(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A record created after the figure shows as added; the replay is exact."""
    _seed(sessions, org)
    figure_id = _compute(sessions, org, "rep_a2", SUM)
    with transaction(sessions) as session:
        account = add_account(session, org.actors["rep_a2"], "苏州新材料有限公司")
        added = add_opportunity(
            session, org.actors["rep_a2"], account, "新材料试点", amount="99.99"
        )

    with transaction(sessions) as session:
        replay = replay_figure(session, org.actors["rep_a2"], figure_id)

    assert (replay.replayed_value, replay.current_value, replay.added) == (
        "300.00",
        "399.99",
        [added],
    )
    assert replay.is_reproduced


def test_a_tampered_value_is_detected(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Changing a stored figure breaks its digest and fails the replay."""
    _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)
    with transaction(sessions) as session:
        session.execute(
            update(FigureProvenance)
            .where(FigureProvenance.id == figure_id)
            .values(value="9999.00")
        )

    with transaction(sessions) as session:
        replay = replay_figure(session, org.actors["manager_a"], figure_id)

    assert replay.problems == [
        f"figure {figure_id}: the stored provenance does not match its digest"
    ]
    assert (replay.replayed_value, replay.is_reproduced) == ("1550.50", False)


def test_a_rewritten_digest_is_caught_by_the_audit_entry(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Recomputing the row's digest after tampering still disagrees with the audit."""
    _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)
    with transaction(sessions) as session:
        figure = session.get(FigureProvenance, figure_id)
        assert figure is not None
        figure.values_digest = "0" * 64
        from waggle.governance.lineage import provenance_digest

        figure.provenance_digest = provenance_digest(figure)

    with transaction(sessions) as session:
        figure = get_figure(session, org.actors["manager_a"], figure_id)
        problems = check_provenance(session, figure)
        replay = replay_figure(session, org.actors["manager_a"], figure_id)

    assert problems == [
        f"figure {figure_id}: the audit entry names another provenance digest"
    ]
    assert (replay.is_digest_matched, replay.is_reproduced) == (False, False)


def test_an_orm_bulk_update_is_kept_in_the_history(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A bulk UPDATE through the session (as merges use) leaves field edits."""
    _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)
    with transaction(sessions) as session:
        session.execute(
            update(Opportunity)
            .where(Opportunity.owner_id == org.employees["rep_a1"])
            .values(amount=Decimal("1.00"))
        )

    with transaction(sessions) as session:
        replay = replay_figure(session, org.actors["manager_a"], figure_id)

    assert (replay.replayed_value, replay.is_reproduced) == ("1550.50", True)
    assert (replay.edits_since, replay.current_value) == (2, "302.00")


def test_a_change_behind_the_history_is_not_passed_off_as_reproduced(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Values changed by plain SQL no longer match the stored digest."""
    deals = _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)
    with transaction(sessions) as session:
        session.connection().execute(
            update(Opportunity.__table__)
            .where(Opportunity.__table__.c.id == deals["a2"])
            .values(amount=Decimal("1.00"))
        )

    with transaction(sessions) as session:
        replay = replay_figure(session, org.actors["manager_a"], figure_id)

    assert (replay.is_digest_matched, replay.is_reproduced) == (False, False)
    assert replay.replayed_value == "1251.50"


def test_edit_history_records_old_and_new_values_and_the_editor(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Each changed field leaves one edit row in the transaction of the change."""
    deals = _seed(sessions, org)

    with transaction(sessions) as session:
        update_record(
            session,
            org.actors["rep_a1"],
            OPPORTUNITIES,
            deals["a1_first"],
            {"amount": Decimal("1200"), "name": "二期产线改造（扩容）"},
        )

    with sessions() as session:
        edits = session.execute(
            select(
                FieldEdit.field,
                FieldEdit.old_value,
                FieldEdit.new_value,
                FieldEdit.changed_by,
            )
            .where(FieldEdit.record_id == deals["a1_first"])
            .order_by(FieldEdit.field)
        ).all()
    assert [tuple(edit) for edit in edits] == [
        ("amount", '"1000.00"', '"1200.00"', "rep_a1"),
        ("name", '"二期产线改造"', '"二期产线改造（扩容）"', "rep_a1"),
    ]


def test_classified_values_are_withheld_from_the_edit_history(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A confidential field's change is noted without copying its values."""
    deals = _seed(sessions, org)
    with transaction(sessions) as session:
        account = session.get(Opportunity, deals["a1_first"])
        assert account is not None
        contact = create_record(
            session,
            org.actors["rep_a1"],
            CONTACTS,
            {"account_id": account.account_id, "name": "王芳", "phone": "13812345678"},
        )
        contact_id = contact.id

    with transaction(sessions) as session:
        update_record(
            session,
            org.actors["rep_a1"],
            CONTACTS,
            contact_id,
            {"phone": "13900001111", "name": "王芳芳", "decision_role": "user"},
        )

    with sessions() as session:
        edits = session.scalars(
            select(FieldEdit)
            .where(FieldEdit.record_id == contact_id)
            .order_by(FieldEdit.field)
        ).all()
    # The name is personal information: withheld too; the role is copied.
    assert [(e.field, e.old_value, e.new_value, e.is_withheld) for e in edits] == [
        ("decision_role", "null", '"user"', False),  # JSON-encoded values
        ("name", None, None, True),
        ("phone", None, None, True),
    ]


def test_drill_down_shows_only_records_the_viewer_may_read(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A rep drilling into a manager's figure sees only their own records."""
    deals = _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)
    with transaction(sessions) as session:
        update_record(
            session,
            org.actors["rep_a1"],
            OPPORTUNITIES,
            deals["a1_first"],
            {"amount": Decimal("4000.00")},
        )

    with transaction(sessions) as session:
        drill = drill_down(session, org.actors["rep_a1"], figure_id)

    assert [record.record_id for record in drill.records] == [
        deals["a1_first"],
        deals["a1_second"],
    ]
    assert drill.withheld == 1
    first = drill.records[0]
    assert (first.label, first.values) == ("二期产线改造", {"amount": "4000.00"})
    assert [
        (e.field, e.old_value, e.new_value, e.changed_by, e.is_after_figure)
        for e in first.edits
    ] == [("amount", "1000.00", "4000.00", "rep_a1", True)]


def test_drill_down_masks_classified_fields_for_the_viewer(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A manager sees a rep's contact phone partially, as the masking policy says."""
    deals = _seed(sessions, org)
    with transaction(sessions) as session:
        account = session.get(Opportunity, deals["a1_first"])
        assert account is not None
        create_record(
            session,
            org.actors["rep_a1"],
            CONTACTS,
            {"account_id": account.account_id, "name": "王芳", "phone": "13812345678"},
        )
    spec = FigureSpec(resource="contacts", measure="count")
    figure_id = _compute(sessions, org, "manager_a", spec)

    with transaction(sessions) as session:
        seen_by_manager = drill_down(session, org.actors["manager_a"], figure_id)
        seen_by_owner = drill_down(session, org.actors["rep_a1"], figure_id)

    assert seen_by_manager.records[0].record["phone"] == "138****5678"
    assert seen_by_owner.records[0].record["phone"] == "13812345678"


def test_it_admin_may_not_compute_figures(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """The policy's lineage entry leaves IT administrators out."""
    with transaction(sessions) as session, pytest.raises(PolicyDenied):
        compute_figure(session, org.actors["admin"], name="x", spec=SUM)


def test_figures_refuse_classified_fields(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A classified field cannot contribute, since its history is never copied."""
    spec = FigureSpec(
        resource="contacts", measure="count", filters={"phone": "13812345678"}
    )

    with transaction(sessions) as session, pytest.raises(InvalidInput) as raised:
        compute_figure(session, org.actors["ops"], name="x", spec=spec)

    assert "contacts.phone is classified" in raised.value.message


def test_a_personal_field_cannot_contribute_and_a_text_field_cannot_be_summed(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Names are personal information; summing a name is not a number."""
    personal = FigureSpec(
        resource="contacts", measure="count", filters={"name": "王伟"}
    )
    textual = FigureSpec(resource="opportunities", measure="sum:name")

    with transaction(sessions) as session, pytest.raises(InvalidInput) as named:
        compute_figure(session, org.actors["ops"], name="x", spec=personal)
    with transaction(sessions) as session, pytest.raises(InvalidInput) as summed:
        compute_figure(session, org.actors["ops"], name="y", spec=textual)

    assert "contacts.name is classified, personal" in named.value.message
    assert "opportunities.name is not a number" in summed.value.message


def test_reusing_an_identical_figure_adds_no_row(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """With reuse, the same query over unchanged records returns the earlier row."""
    _seed(sessions, org)
    with transaction(sessions) as session:
        first = compute_figure(
            session, org.actors["ops"], name="x", spec=SUM, reuse=True
        ).id

    with transaction(sessions) as session:
        second = compute_figure(
            session, org.actors["ops"], name="x", spec=SUM, reuse=True
        ).id
        count = len(session.scalars(select(FigureProvenance.id)).all())

    assert (second, count) == (first, 1)


def test_evaluate_measures_grouping_shares_and_weights() -> None:
    """The pure evaluator sums exactly, rounds half to even and groups by key."""
    rows = [
        (1, {"amount": "100.00", "stage_id": 1}),
        (2, {"amount": "50.25", "stage_id": 2}),
        (3, {"amount": "0.01", "stage_id": 2}),
    ]

    results = [
        evaluate(FigureSpec(resource="r", measure="sum:amount"), rows),
        evaluate(FigureSpec(resource="r", measure="avg:amount"), rows),
        evaluate(
            FigureSpec(resource="r", measure="share", part={"stage_id": 2}, places=0),
            rows,
        ),
        evaluate(
            FigureSpec(
                resource="r",
                measure="weighted:amount:stage_id",
                weights={"1": 10, "2": 50},
            ),
            rows,
        ),
        evaluate(FigureSpec(resource="r", group_by=("stage_id",)), rows),
    ]

    assert results == ["150.26", "50.09", "67", "35.13", {"[1]": "1", "[2]": "2"}]


def test_a_grouped_figure_replays_after_a_record_changes_group(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Moving a deal to another owner changes today's groups, not the replay."""
    deals = _seed(sessions, org)
    spec = FigureSpec(
        resource="opportunities", measure="sum:amount", group_by=("owner_id",)
    )
    figure_id = _compute(sessions, org, "manager_a", spec)
    with transaction(sessions) as session:
        update_record(
            session,
            org.actors["manager_a"],
            OPPORTUNITIES,
            deals["a1_second"],
            {"owner_id": org.employees["rep_a2"]},
        )

    with transaction(sessions) as session:
        replay = replay_figure(session, org.actors["manager_a"], figure_id)

    a1, a2 = org.employees["rep_a1"], org.employees["rep_a2"]
    assert replay.replayed_value == {f"[{a1}]": "1250.50", f"[{a2}]": "300.00"}
    assert replay.current_value == {f"[{a1}]": "1000.00", f"[{a2}]": "550.50"}
    assert (replay.is_reproduced, replay.changed) == (True, [deals["a1_second"]])


def test_a_rep_replaying_a_managers_figure_gets_the_verdict_not_the_values(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """The team total would tell what the rep's row scope hides: values withheld."""
    _seed(sessions, org)
    figure_id = _compute(sessions, org, "manager_a", SUM)

    with transaction(sessions) as session:
        mine = replay_figure(session, org.actors["manager_a"], figure_id)
        theirs = replay_figure(session, org.actors["rep_a1"], figure_id)

    assert (mine.is_value_withheld, mine.is_reproduced) == (False, True)
    assert mine.stored_value is not None
    # Today's figure, computed in the rep's own scope, misses the team's deals.
    assert (theirs.is_value_withheld, theirs.is_reproduced, theirs.is_current) == (
        True,
        True,
        False,
    )
    assert (theirs.stored_value, theirs.replayed_value, theirs.current_value) == (
        None,
        None,
        None,
    )
