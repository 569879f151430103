"""Lineage of aggregate answers: provenance without rows, replay, tampering."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity, build_org
from waggle.cli import main
from waggle.core.db import Base, transaction
from waggle.core.errors import NotFound, PolicyDenied
from waggle.crm.service import ACCOUNTS, CONTACTS, OPPORTUNITIES
from waggle.governance import configure_policy
from waggle.governance.aggregate_lineage import (
    AggregateLineage,
    AggregateReplay,
    aggregate_provenance,
    replay_aggregate,
)
from waggle.governance.aggregates import aggregate_provenance_digest, run_aggregate
from waggle.governance.guard import active_policy
from waggle.governance.lineage import policy_digest
from waggle.governance.models import AggregateQuery, AuditEntry
from waggle.governance.records import create_record, delete_record, update_record

URL = "/api/v1/governance/aggregates"
# industry -> accounts; 零售 (4) is below k = 5.
INDUSTRIES = {"制造": 6, "金融": 5, "零售": 4}
OWNERS = ("rep_a1", "rep_b1", "rep_w1")
# Ids far from every other number in an answer, so that the JSON text can be
# searched for them.
FIRST_IDS = {"accounts": 70001, "contacts": 71001, "opportunities": 72001}
BY_INDUSTRY = {"group_by": ["account.industry"]}


@dataclass
class Data:
    """Per industry the ids of accounts, contacts and deals; who owns each row."""

    org: Org
    accounts: dict[str, list[int]] = field(default_factory=dict)
    contacts: dict[str, list[int]] = field(default_factory=dict)
    deals: dict[str, list[int]] = field(default_factory=dict)
    owner: dict[int, str] = field(default_factory=dict)

    def every_id(self) -> set[int]:
        tables = (self.accounts, self.contacts, self.deals)
        return {rid for table in tables for ids in table.values() for rid in ids}

    def owned(self, ids: list[int], *usernames: str) -> list[int]:
        return [rid for rid in ids if self.owner[rid] in usernames]


@pytest.fixture
def data(sessions: sessionmaker[Session]) -> Data:
    """Fifteen accounts in three industries, each with one contact and one deal.

    Owners rotate over rep_a1, rep_b1 (east) and rep_w1 (west); deal ``n``
    is worth 1000 + 10·n.
    """
    data = Data(org=build_org(sessions))
    ops = data.org.actors["ops"]
    with transaction(sessions) as session:
        number = 0
        for industry, count in INDUSTRIES.items():
            for _ in range(count):
                _add_customer(session, data, ops, industry, number)
                number += 1
    return data


def _add_customer(
    session: Session, data: Data, ops: Any, industry: str, number: int
) -> None:
    owner = OWNERS[number % 3]
    owner_id = data.org.employees[owner]
    account = add_account(
        session,
        ops,
        f"客户{number}号",
        id=FIRST_IDS["accounts"] + number,
        industry=industry,
        owner_id=owner_id,
    )
    contact = create_record(
        session,
        ops,
        CONTACTS,
        {
            "id": FIRST_IDS["contacts"] + number,
            "account_id": account,
            "name": f"联系人{number}",
        },
    ).id
    deal = add_opportunity(
        session,
        ops,
        account,
        f"项目{number}号",
        id=FIRST_IDS["opportunities"] + number,
        amount=Decimal(1000 + 10 * number),
        owner_id=owner_id,
    )
    for table, record_id in (
        (data.accounts, account),
        (data.contacts, contact),
        (data.deals, deal),
    ):
        table.setdefault(industry, []).append(record_id)
        data.owner[record_id] = owner


def _ask(
    sessions: sessionmaker[Session], data: Data, username: str, **query: Any
) -> int:
    with transaction(sessions) as session:
        result = run_aggregate(session, data.org.actors[username], **query)
        assert result.provenance is not None
        return result.provenance.query_id


def _provenance(
    sessions: sessionmaker[Session], data: Data, username: str, query_id: int
) -> AggregateLineage:
    with transaction(sessions) as session:
        return aggregate_provenance(session, data.org.actors[username], query_id)


def _replay(
    sessions: sessionmaker[Session], data: Data, username: str, query_id: int
) -> AggregateReplay:
    with transaction(sessions) as session:
        return replay_aggregate(session, data.org.actors[username], query_id)


def _numbers(text: str) -> set[int]:
    """Every whole number standing on its own in ``text`` (not inside a hash)."""
    return {int(token) for token in re.findall(r"(?<![\w.])\d+(?![\w.])", text)}


def _sum_by_industry(sessions: sessionmaker[Session], data: Data) -> int:
    return _ask(
        sessions,
        data,
        "ops",
        resource="opportunities",
        measure="sum:amount",
        **BY_INDUSTRY,
    )


def _groups(lineage: AggregateLineage) -> list[tuple[Any, ...]]:
    return [
        (g.key, g.value, g.record_count, g.record_ids, g.hidden_records)
        for g in lineage.groups
    ]


# Provenance -------------------------------------------------------------------


def test_a_directors_answer_carries_provenance_and_names_no_record(
    client: TestClient, sessions: sessionmaker[Session], data: Data
) -> None:
    """The aggregate-only answer tells where it came from without a single row id."""
    headers = data.org.headers("director_west")

    response = client.post(
        URL, json={"resource": "contacts", **BY_INDUSTRY}, headers=headers
    )

    answer = response.json()
    assert response.status_code == 200
    assert answer["groups"] == [
        {"key": {"account.industry": "制造"}, "value": 6},
        {"key": {"account.industry": "金融"}, "value": 5},
    ]
    provenance = answer["provenance"]
    assert sorted(provenance) == [
        "chain_hash",
        "chain_seq",
        "checkpoint_id",
        "computed_at",
        "policy_digest",
        "policy_version",
        "provenance_digest",
        "query_id",
        "record_count",
        "values_digest",
    ]
    assert (provenance["record_count"], provenance["policy_version"]) == (11, "default")
    assert provenance["policy_digest"] == policy_digest(active_policy())
    assert _numbers(response.text) & data.every_id() == set()
    with sessions() as session:
        stored = session.get(AggregateQuery, provenance["query_id"])
        assert stored is not None
        assert stored.groups == [data.contacts["制造"], data.contacts["金融"]]


def test_a_directors_provenance_lists_only_the_rows_of_their_region(
    client: TestClient, data: Data
) -> None:
    """Ids are listed as the director's read scope allows; the rest are counted."""
    headers = data.org.headers("director_west")
    asked = client.post(
        URL, json={"resource": "contacts", **BY_INDUSTRY}, headers=headers
    ).json()
    query_id = asked["provenance"]["query_id"]

    response = client.get(f"{URL}/{query_id}/provenance", headers=headers)

    body = response.json()
    west = [data.owned(data.contacts[i], "rep_w1") for i in ("制造", "金融")]
    assert west == [[71003, 71006], [71009]]  # rep_w1's contacts
    assert response.status_code == 200
    assert [
        (g["value"], g["record_count"], g["record_ids"], g["hidden_records"])
        for g in body["groups"]
    ] == [(6, 6, [71003, 71006], 4), (5, 5, [71009], 4)]
    assert (body["is_intact"], body["value_withheld"]) == (True, False)
    east = data.every_id() - set(west[0]) - set(west[1])
    assert _numbers(response.text) & east == set()


def test_an_aggregate_only_role_without_read_sees_no_ids(
    sessions: sessionmaker[Session], data: Data, tmp_path: Path
) -> None:
    """Without read on the resource, the asker sees values and counts, no ids."""
    policy = tmp_path / "aggregate-only.yaml"
    document = yaml.safe_load(
        (
            Path(__file__).parents[2] / "src/waggle/governance/default_policy.yaml"
        ).read_text(encoding="utf-8")
    )
    contacts = dict(document["resources"]["contacts"])
    contacts["read"] = [role for role in contacts["read"] if role != "director"]
    document["resources"]["contacts"] = contacts
    policy.write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")

    configure_policy(policy)
    try:
        query_id = _ask(sessions, data, "director_west", resource="contacts")
        lineage = _provenance(sessions, data, "director_west", query_id)
    finally:
        configure_policy(None)

    assert _groups(lineage) == [({}, 15, 15, [], 15)]
    assert lineage.problems == []


def test_sales_ops_provenance_lists_the_ids_of_each_group(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """Sales ops reads every account, so each released group names its ids."""
    query_id = _ask(sessions, data, "ops", resource="accounts", group_by=["industry"])

    lineage = _provenance(sessions, data, "ops", query_id)

    assert _groups(lineage) == [
        ({"industry": "制造"}, 6, 6, data.accounts["制造"], 0),
        ({"industry": "金融"}, 5, 5, data.accounts["金融"], 0),
    ]
    body = lineage.as_dict()
    assert (body["suppressed_groups"], body["record_count"]) == (1, 11)
    assert (body["is_intact"], body["problems"]) == (True, [])
    assert body["computed_by"]["scope"] == "all"


def test_only_the_asker_sees_the_values(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """A rep and a director holding the grant get their readable ids, no values."""
    query_id = _ask(sessions, data, "ops", resource="accounts", group_by=["industry"])

    by_rep = _provenance(sessions, data, "rep_a1", query_id)
    by_director = _provenance(sessions, data, "director_east", query_id)

    assert _groups(by_rep) == [
        (None, None, None, data.owned(data.accounts["制造"], "rep_a1"), None),
        (None, None, None, data.owned(data.accounts["金融"], "rep_a1"), None),
    ]
    assert by_rep.is_value_withheld
    assert by_rep.as_dict()["suppressed_groups"] is None
    assert by_director.is_value_withheld
    assert [g.value for g in by_director.groups] == [None, None]
    assert by_director.groups[0].record_ids == data.owned(
        data.accounts["制造"], "rep_a1", "rep_b1"
    )


def test_an_equal_scope_over_other_rows_does_not_show_the_values(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """Manager B's team scope is as wide as manager A's but covers other deals."""
    query_id = _ask(sessions, data, "manager_a", resource="opportunities")

    by_asker = _provenance(sessions, data, "manager_a", query_id)
    by_peer = _provenance(sessions, data, "manager_b", query_id)

    assert [g.value for g in by_asker.groups] == [5]  # rep_a1's five deals
    assert (by_peer.is_value_withheld, by_peer.groups[0].value) == (True, None)


def test_reading_anothers_answer_gives_no_way_around_differencing(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """A director who split by industry may not learn the total by reading it.

    15 - 6 - 5 would give the suppressed 零售 group of 4; asking the total is
    refused, and reading sales ops' total shows no value either.
    """
    _ask(sessions, data, "director_east", resource="accounts", group_by=["industry"])
    total = _ask(sessions, data, "ops", resource="accounts")

    read = _provenance(sessions, data, "director_east", total)
    with pytest.raises(PolicyDenied):
        _ask(sessions, data, "director_east", resource="accounts")

    assert (read.is_value_withheld, read.groups[0].value) == (True, None)
    assert read.groups[0].record_count is None


def test_provenance_names_problems_when_the_query_row_is_edited(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """An edited row breaks its digest; a rewritten digest disagrees with the audit."""
    query_id = _ask(sessions, data, "ops", resource="accounts", group_by=["industry"])
    with transaction(sessions) as session:
        session.execute(
            update(AggregateQuery)
            .where(AggregateQuery.id == query_id)
            .values(groups=[data.accounts["制造"][1:], data.accounts["金融"]])
        )
    edited = _provenance(sessions, data, "ops", query_id)
    with transaction(sessions) as session:
        query = session.get(AggregateQuery, query_id)
        assert query is not None
        query.provenance_digest = aggregate_provenance_digest(query)

    rewritten = _provenance(sessions, data, "ops", query_id)

    assert edited.problems == [
        f"aggregate query {query_id}: the stored provenance does not match its digest"
    ]
    assert rewritten.problems == [
        f"aggregate query {query_id}: the audit entry names another provenance digest"
    ]
    assert rewritten.as_dict()["is_intact"] is False


def test_answering_audits_the_provenance_digest(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """The audit row written with the answer names the query and its digest."""
    query_id = _ask(sessions, data, "ops", resource="accounts")

    with sessions() as session:
        query = session.get(AggregateQuery, query_id)
        assert query is not None
        details = session.scalars(
            select(AuditEntry.detail)
            .where(AuditEntry.username == "ops", AuditEntry.resource == "lineage")
            .order_by(AuditEntry.seq)
        ).all()

    assert details == [f"aggregate_query={query_id} digest={query.provenance_digest}"]


def test_every_answer_is_kept_beyond_the_differencing_history(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """Answered queries are provenance: none is pruned after `history` (50) more."""
    with transaction(sessions) as session:
        for _ in range(52):
            run_aggregate(session, data.org.actors["ops"], resource="accounts")

    with sessions() as session:
        kept = session.scalar(select(func.count()).select_from(AggregateQuery))

    assert kept == 52


def test_an_unknown_query_is_not_found(client: TestClient, data: Data) -> None:
    """Provenance and replay of an id never answered are 404 not_found."""
    headers = data.org.headers("ops")

    shown = client.get(f"{URL}/999999/provenance", headers=headers)
    replayed = client.post(f"{URL}/999999/replay", headers=headers)

    assert [shown.status_code, replayed.status_code] == [404, 404]
    assert shown.json()["error"]["code"] == "not_found"
    assert (
        replayed.json()["error"]["message"] == "aggregate query 999999 does not exist"
    )


def test_an_unknown_query_raises_not_found_in_the_service(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """The service names the missing query."""
    with transaction(sessions) as session, pytest.raises(NotFound) as raised:
        aggregate_provenance(session, data.org.actors["ops"], 424242)

    assert raised.value.message == "aggregate query 424242 does not exist"


# Replay -----------------------------------------------------------------------


def test_replay_reproduces_after_the_amounts_behind_a_group_were_edited(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """Undoing a changed amount and a changed industry gives the stored sums."""
    query_id = _sum_by_industry(sessions, data)
    ops = data.org.actors["ops"]
    with transaction(sessions) as session:
        first_deal = data.deals["制造"][0]
        update_record(
            session, ops, OPPORTUNITIES, first_deal, {"amount": Decimal("9999.00")}
        )
        moved = data.accounts["金融"][0]
        update_record(session, ops, ACCOUNTS, moved, {"industry": "制造"})

    replay = _replay(sessions, data, "ops", query_id)

    assert [(g.key, g.stored_value, g.replayed_value) for g in replay.groups] == [
        ({"account.industry": "制造"}, "6150.00", "6150.00"),
        ({"account.industry": "金融"}, "5400.00", "5400.00"),
    ]
    assert (replay.is_reproduced, replay.is_digest_matched, replay.edits_since) == (
        True,
        True,
        2,
    )
    # 制造 gains the moved account's deal, 金融 falls below k.
    assert (replay.is_current, replay.current_groups) == (
        False,
        [{"key": {"account.industry": "制造"}, "value": "16209.00"}],
    )
    assert replay.changed == [first_deal, data.deals["金融"][0]]


def test_replay_rebuilds_a_deal_deleted_since(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """A deletion keeps the deleted values, so the answer is still reproduced."""
    query_id = _sum_by_industry(sessions, data)
    deleted = data.deals["制造"][1]
    with transaction(sessions) as session:
        delete_record(session, data.org.actors["ops"], OPPORTUNITIES, deleted)

    replay = _replay(sessions, data, "ops", query_id)

    assert [g.replayed_value for g in replay.groups] == ["6150.00", "5400.00"]
    # A deleted row can no longer be read: its change is only counted.
    assert (replay.is_reproduced, replay.is_current) == (True, False)
    assert (replay.changed, replay.hidden_changes) == ([], 1)


def test_replay_detects_a_tampered_stored_answer(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """A changed stored value breaks the digest and is not reproduced."""
    query_id = _sum_by_industry(sessions, data)
    with transaction(sessions) as session:
        session.execute(
            update(AggregateQuery)
            .where(AggregateQuery.id == query_id)
            .values(
                result=[
                    {"key": {"account.industry": "制造"}, "value": "1.00"},
                    {"key": {"account.industry": "金融"}, "value": "5400.00"},
                ]
            )
        )

    replay = _replay(sessions, data, "ops", query_id)

    assert replay.problems == [
        f"aggregate query {query_id}: the stored provenance does not match its digest"
    ]
    assert [
        (g.stored_value, g.replayed_value, g.is_reproduced) for g in replay.groups
    ] == [
        ("1.00", "6150.00", False),
        ("5400.00", "5400.00", True),
    ]
    assert replay.is_reproduced is False


def test_replay_detects_values_changed_behind_the_history(
    sessions: sessionmaker[Session], data: Data
) -> None:
    """An amount changed by plain SQL no longer matches the values digest."""
    query_id = _sum_by_industry(sessions, data)
    table = Base.metadata.tables["opportunities"]
    with transaction(sessions) as session:
        session.connection().execute(
            update(table)
            .where(table.c.id == data.deals["金融"][0])
            .values(amount=Decimal("1.00"))
        )

    replay = _replay(sessions, data, "ops", query_id)

    assert (replay.is_digest_matched, replay.is_reproduced) == (False, False)
    assert [g.replayed_value for g in replay.groups] == ["6150.00", "4341.00"]


def test_replay_for_a_viewer_without_the_grant_gives_verdicts_only(
    client: TestClient, sessions: sessionmaker[Session], data: Data
) -> None:
    """A rep learns whether the answer is reproduced and current, no values or ids."""
    query_id = _sum_by_industry(sessions, data)
    west_deal = data.owned(data.deals["制造"], "rep_w1")[0]
    with transaction(sessions) as session:
        update_record(
            session,
            data.org.actors["ops"],
            OPPORTUNITIES,
            west_deal,
            {"amount": Decimal("1.00")},
        )

    response = client.post(
        f"{URL}/{query_id}/replay", headers=data.org.headers("rep_a1")
    )

    body = response.json()
    assert response.status_code == 200
    assert [
        (g["key"], g["stored_value"], g["replayed_value"], g["is_reproduced"])
        for g in body["groups"]
    ] == [(None, None, None, True), (None, None, None, True)]
    assert (body["is_reproduced"], body["is_current"], body["current_groups"]) == (
        True,
        False,
        None,
    )
    assert (body["changed"], body["hidden_changes"]) == ([], 1)
    assert _numbers(response.text) & data.every_id() == set()


# The command line ---------------------------------------------------------------


def test_cli_asks_shows_the_provenance_and_replays(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    data: Data,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`waggle governance aggregate ask|provenance|replay` as a director and ops."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    command = ["governance", "aggregate"]

    by_industry = ["--group-by", "account.industry"]
    main([*command, "ask", "contacts", *by_industry, "--as", "director_west"])
    asked = capsys.readouterr().out
    query_id = str(json.loads(asked)["provenance"]["query_id"])
    main([*command, "provenance", query_id, "--as", "ops"])
    shown = json.loads(capsys.readouterr().out)
    main([*command, "replay", query_id, "--as", "ops"])
    replayed = json.loads(capsys.readouterr().out)

    assert not _numbers(asked) & data.every_id()
    assert [group["value"] for group in json.loads(asked)["groups"]] == [6, 5]
    # Sales ops reads every contact: the ids, but not the director's values.
    assert shown["is_intact"] and shown["value_withheld"] is True
    assert sorted(shown["groups"][0]["record_ids"]) == sorted(data.contacts["制造"])
    assert replayed["is_reproduced"] is True
