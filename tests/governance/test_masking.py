"""Column masking: formats, the matrix, and the API/pages/exports checked against
a plain-Python reference model over generated (user, query) cases."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import PEOPLE, STAFF, Org, add_account, add_opportunity, build_org
from tests.governance import reference_policy as ref
from waggle.core.db import transaction
from waggle.core.errors import PolicyDenied
from waggle.core.settings import Settings
from waggle.crm.exporting import export_records
from waggle.crm.schemas import ContactRead, OpportunityRead
from waggle.crm.service import CONTACTS, OPPORTUNITIES
from waggle.governance.catalogue import FieldClass
from waggle.governance.crypto import get_suite
from waggle.governance.masking import (
    MaskingRules,
    configure_masking_key,
    hash_mask,
    mask_value,
    partial_mask,
)
from waggle.governance.models import AuditEntry
from waggle.governance.records import create_record, get_record, list_records

OWNERS = ["rep_a1", "rep_a2", "rep_b1", "rep_w1", "manager_a", "manager_b"]
API_CASES = 200
SERVICE_CASES = 2000


@dataclass
class World:
    org: Org
    model: ref.OrgModel
    # id -> (owner employee id, stored fields)
    contacts: dict[int, tuple[int, dict[str, str | None]]]
    opportunities: dict[int, tuple[int, dict[str, str | None]]]
    accounts: dict[int, int]
    # The instance's masking key, read from its file (the suite is gm).
    hash_key: bytes


def test_partial_masks_have_the_documented_shapes() -> None:
    """Phones, e-mails, names and other text are starred in their own shapes."""
    cases = [
        ("13812341234", "phone"),
        ("wang.wei@example.com.cn", "email"),
        ("王五", "name"),
        ("欧阳娜娜", "name"),
        ("91310000MA1FL8XQ34", "text"),
        ("abc", "text"),
    ]

    shown = [partial_mask(value, shape) for value, shape in cases]

    assert shown == [
        "138****1234",
        "w***@example.com.cn",
        "王*",
        "欧***",
        "91****34",
        "a**",
    ]


def test_hash_mask_is_a_keyed_hmac_prefix() -> None:
    """The hash mask is the first 16 hex digits of an HMAC over field and value."""
    key = get_suite("gm").secret_key(bytes(range(16)))

    first = hash_mask("13812341234", table="contacts", column="phone", key=key)
    again = hash_mask("13812341234", table="contacts", column="phone", key=key)

    # HMAC-SM3 with key 000102...0f, as `openssl mac -digest SM3 ... HMAC` gives.
    assert first == again == "ab5e10f361b1fe92"
    assert first == ref.expected_value(
        ref.User("auditor", None),
        "contacts",
        "phone",
        "13812341234",
        None,
        hash_key=bytes(range(16)),
    )


def test_null_mask_keeps_required_text_columns_valid() -> None:
    """A hidden value is None, or '' where the column may not be empty."""
    entry = FieldClass(table="contacts", column="name", grade="secret")

    values = [
        mask_value("null", "王五", entry=entry, nullable=True),
        mask_value("null", "王五", entry=entry, nullable=False),
        mask_value("partial", 12, entry=entry, nullable=True),
    ]

    assert values == [None, "", None]


def test_the_widest_kind_among_roles_wins() -> None:
    """A user with a hashing and a partial role sees the partial mask."""
    rules = MaskingRules(
        grades={
            "confidential": {"default": "null", "rep": "partial", "auditor": "hash"}
        }
    )

    kinds = [
        rules.kind_for({"auditor"}, "confidential"),
        rules.kind_for({"auditor", "rep"}, "confidential"),
        rules.kind_for({"it_admin"}, "confidential"),
        rules.kind_for(set(), "public"),
    ]

    assert kinds == ["hash", "partial", "null", "full"]


@given(st.text(min_size=1, max_size=40), st.sampled_from(ref.KIND_RANK))
def test_masking_never_returns_more_than_the_reference(value: str, kind: str) -> None:
    """For any text, each mask kind gives exactly what the reference computes."""
    entry = FieldClass(table="t", column="c", grade="confidential")

    shown = mask_value(kind, value, entry=entry, nullable=True)

    expected = {
        "full": value,
        "null": None,
        "partial": ref.partial("text", value),
        "hash": None,
    }[kind]
    if kind == "hash":
        assert shown == hash_mask(value, table="t", column="c")
    else:
        assert shown == expected


# Against the reference model -------------------------------------------------


def _build_world(sessions: sessionmaker[Session], *, hash_key: bytes) -> World:
    org = build_org(sessions)
    model = ref.OrgModel()
    managers = {name: manager for name, _role, manager, _region in PEOPLE}
    for name, _role, _manager, region in PEOPLE:
        boss = managers[name]
        model.people[org.employees[name]] = ref.Person(
            org.employees[name], org.employees[boss] if boss else None, region
        )
    world = World(
        org=org,
        model=model,
        contacts={},
        opportunities={},
        accounts={},
        hash_key=hash_key,
    )
    rng = random.Random(20260302)
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        for index in range(12):
            owner = org.employees[OWNERS[index % len(OWNERS)]]
            account_id = add_account(session, ops, f"测试客户{index}号", owner_id=owner)
            world.accounts[account_id] = owner
            pains = rng.choice([None, f"预算紧张，决策慢{index}", "价"])
            opportunity_id = add_opportunity(
                session,
                ops,
                account_id,
                f"商机{index}",
                owner_id=owner,
                customer_pain_points=pains,
            )
            world.opportunities[opportunity_id] = (
                owner,
                {"customer_pain_points": pains},
            )
            for person in range(3):
                fields = {
                    "phone": rng.choice([None, f"139{index:04d}{person:04d}"]),
                    "email": rng.choice([None, f"c{index}x{person}@kehu{index}.cn"]),
                    "wechat_id": rng.choice([None, f"wx_{index}_{person}"]),
                }
                contact = create_record(
                    session,
                    ops,
                    CONTACTS,
                    {
                        "account_id": account_id,
                        "name": f"联系人{index}-{person}",
                        **fields,
                    },
                )
                world.contacts[contact.id] = (owner, fields)
    return world


def _users(world: World) -> list[tuple[str, ref.User]]:
    people = [
        (name, ref.User(role, world.org.employees[name]))
        for name, role, _m, _r in PEOPLE
    ]
    return people + [(name, ref.User(role, None)) for name, role in STAFF]


def _check_item(
    world: World, user: ref.User, table: str, item: dict[str, object]
) -> int:
    records = world.contacts if table == "contacts" else world.opportunities
    owner, stored = records[int(str(item["id"]))]
    assert item["owner_id"] == owner
    for column, value in stored.items():
        assert item[column] == ref.expected_value(
            user, table, column, value, owner, hash_key=world.hash_key
        )
    return 1


def _expected_ids(
    world: World, user: ref.User, table: str, filters: dict[str, object]
) -> set[int]:
    records = world.contacts if table == "contacts" else world.opportunities
    found = set()
    for record_id, (owner, stored) in records.items():
        if not ref.sees_row(world.model, user, owner):
            continue
        if "owner_id" in filters and filters["owner_id"] != owner:
            continue
        if "email" in filters:
            if stored.get("email") != filters["email"]:
                continue
            if not ref.can_filter_on(user, table, "email", owner):
                continue
        found.add(record_id)
    return found


def _random_query(
    rng: random.Random, world: World, table: str
) -> tuple[str, dict[str, object]]:
    kind = rng.choice(["list", "list", "get"])
    if kind == "get":
        records = world.contacts if table == "contacts" else world.opportunities
        return "get", {"id": rng.choice(sorted(records))}
    filters: dict[str, object] = {}
    if rng.random() < 0.4:
        filters["owner_id"] = rng.choice(sorted(world.model.people))
    if table == "contacts" and rng.random() < 0.4:
        emails = [f["email"] for _o, f in world.contacts.values() if f["email"]]
        filters["email"] = rng.choice(emails)
    return "list", filters


@pytest.fixture
def world(sessions: sessionmaker[Session], settings: Settings) -> Iterator[World]:
    # The application built for ``settings`` loads the same key from its store.
    configure_masking_key(settings)
    key_file = settings.data_dir / "keys" / "masking-hash-gm.secret.json"
    document = json.loads(key_file.read_text(encoding="utf-8"))
    yield _build_world(sessions, hash_key=base64.b64decode(document["key"]))
    configure_masking_key(None)


Reader = Callable[[str, str, str, dict[str, object]], tuple[int, Any]]


def _run_cases(world: World, read: Reader, *, cases: int, seed: int) -> int:
    """Replay ``cases`` generated queries through ``read``; return fields checked."""
    rng = random.Random(seed)
    users = _users(world)
    checked = 0
    for _case in range(cases):
        username, user = rng.choice(users)
        table = rng.choice(["contacts", "opportunities"])
        kind, query = _random_query(rng, world, table)
        status, body = read(username, table, kind, query)
        if kind == "get":
            records = world.contacts if table == "contacts" else world.opportunities
            owner = records[int(str(query["id"]))][0]
            allowed = ref.may_read(user) and ref.sees_row(world.model, user, owner)
            assert status == (200 if allowed else 403), (username, query)
            checked += _check_item(world, user, table, body) if allowed else 0
            continue
        if not ref.may_read(user):
            assert status == 403
            continue
        assert {item["id"] for item in body} == _expected_ids(world, user, table, query)
        checked += sum(_check_item(world, user, table, item) for item in body)
    return checked


def test_api_matches_the_reference_policy_on_generated_cases(
    client: TestClient, world: World
) -> None:
    """Over generated API calls no row lies outside policy, no field is unmasked."""

    def read(
        username: str, table: str, kind: str, query: dict[str, object]
    ) -> tuple[int, Any]:
        headers = world.org.headers(username)
        if kind == "get":
            response = client.get(f"/api/v1/{table}/{query['id']}", headers=headers)
            return response.status_code, response.json()
        params = {**{k: str(v) for k, v in query.items()}, "limit": "500"}
        response = client.get(f"/api/v1/{table}", headers=headers, params=params)
        body = response.json()
        return response.status_code, body.get("items")

    checked = _run_cases(world, read, cases=API_CASES, seed=7)

    assert checked > API_CASES


def test_services_match_the_reference_policy_on_thousands_of_cases(
    session: Session, world: World
) -> None:
    """Over thousands of generated reads (the API's path without HTTP), the same."""
    specs = {
        "contacts": (CONTACTS, ContactRead),
        "opportunities": (OPPORTUNITIES, OpportunityRead),
    }

    def read(
        username: str, table: str, kind: str, query: dict[str, object]
    ) -> tuple[int, Any]:
        actor = world.org.actors[username]
        spec, schema = specs[table]
        try:
            if kind == "get":
                record = get_record(session, actor, spec, int(str(query["id"])))
                return 200, schema.model_validate(record).model_dump(mode="json")
            page = list_records(session, actor, spec, filters=query, limit=500)
        except PolicyDenied:
            return 403, None
        items = [schema.model_validate(r).model_dump(mode="json") for r in page.items]
        return 200, items

    checked = _run_cases(world, read, cases=SERVICE_CASES, seed=11)
    session.rollback()

    assert checked > SERVICE_CASES


def test_a_masked_read_leaves_the_fields_in_its_audit_row(
    client: TestClient, world: World, session: Session
) -> None:
    """A manager's read of a team contact names the classified and masked fields."""
    contact_id = next(
        cid
        for cid, (owner, fields) in world.contacts.items()
        if owner == world.org.employees["rep_a1"] and fields["phone"]
    )

    response = client.get(
        f"/api/v1/contacts/{contact_id}", headers=world.org.headers("manager_a")
    )

    entry = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.resource == "contacts", AuditEntry.username == "manager_a")
        .order_by(AuditEntry.id.desc())
    ).first()
    assert response.json()["phone"].count("*") == 4
    assert entry is not None
    assert entry.detail == (
        "classified fields read: email,phone,wechat_id; "
        "masked: email=partial,phone=partial,wechat_id=partial"
    )


def test_an_empty_patch_does_not_reveal_masked_fields(
    client: TestClient, world: World
) -> None:
    """Updating a record answers with the same masks as reading it."""
    contact_id, (_owner, fields) = next(
        (cid, item)
        for cid, item in world.contacts.items()
        if item[1]["phone"] and item[0] == world.org.employees["rep_a2"]
    )

    response = client.patch(
        f"/api/v1/contacts/{contact_id}",
        json={},
        headers=world.org.headers("manager_a"),
    )

    assert response.status_code == 200
    assert response.json()["phone"] == ref.partial("phone", str(fields["phone"]))


def test_exports_mask_as_reads_do(
    sessions: sessionmaker[Session], world: World
) -> None:
    """A manager's contact export carries masked phones; sales ops' the stored ones."""

    def phones(username: str) -> set[str]:
        target = io.BytesIO()
        with transaction(sessions) as session:
            export_records(
                session,
                world.org.actors[username],
                "contacts",
                target,
                encoding="utf-8",
            )
        rows = csv.DictReader(io.StringIO(target.getvalue().decode("utf-8")))
        return {row["phone"] for row in rows if row["phone"]}

    def stored(username: str) -> set[str]:
        employee = world.org.employees[username]
        return {
            str(f["phone"])
            for owner, f in world.contacts.values()
            if f["phone"] and owner == employee
        }

    by_manager, by_ops = phones("manager_b"), phones("ops")

    # manager_b's team is rep_b1 (masked) and manager_b (the owner: in full).
    masked_b1 = {ref.partial("phone", phone) for phone in stored("rep_b1")}
    assert by_manager == masked_b1 | stored("manager_b")
    assert stored("rep_b1") <= by_ops
