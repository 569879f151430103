"""The data catalogue: complete, shipped defaults, edited by the data owner only."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Org
from waggle.core.db import Base
from waggle.governance.catalogue import file_catalogue, missing_columns
from waggle.governance.masking import active_rules, unmaskable_fields
from waggle.governance.models import AuditEntry

URL = "/api/v1/governance/catalogue"


def test_every_business_column_has_a_catalogue_entry() -> None:
    """A new column of a business table fails here until it is classified."""
    catalogue = file_catalogue()

    missing = missing_columns(catalogue, Base.metadata)

    assert missing == []


def test_the_catalogue_names_only_existing_columns() -> None:
    """No entry or technical table outlives the column or table it describes."""
    catalogue = file_catalogue()
    tables = Base.metadata.tables

    stale = [
        f"{table}.{column}"
        for table, column in catalogue.fields
        if table not in tables or column not in tables[table].columns
    ]
    stale += [name for name in catalogue.technical_tables if name not in tables]

    assert stale == []


def test_shipped_defaults_classify_personal_and_commercial_fields() -> None:
    """Contact details are confidential PI; amounts and credit codes internal."""
    catalogue = file_catalogue()

    shown = {
        name: (entry.level, entry.grade, entry.is_personal)
        for name in [
            "contacts.phone",
            "contacts.email",
            "contacts.wechat_id",
            "opportunities.amount",
            "accounts.credit_code",
            "opportunities.customer_pain_points",
            "behaviour_events.text",
        ]
        if (entry := catalogue.field(*name.split(".")))
    }

    assert shown == {
        "contacts.phone": ("general", "confidential", True),
        "contacts.email": ("general", "confidential", True),
        "contacts.wechat_id": ("general", "confidential", True),
        "opportunities.amount": ("general", "internal", False),
        "accounts.credit_code": ("general", "internal", False),
        "opportunities.customer_pain_points": ("general", "confidential", False),
        "behaviour_events.text": ("general", "confidential", True),
    }


def test_every_shipped_grade_can_be_masked_where_it_must_be() -> None:
    """No required non-text column carries a grade some role sees masked."""
    found = unmaskable_fields(file_catalogue(), active_rules(), Base.metadata)

    assert found == []


def test_the_data_owner_reclassifies_a_field_and_it_is_audited(
    client: TestClient, org: Org, session: Session
) -> None:
    """A PUT by the data owner changes the field, the GET shows it, audit records it."""
    body = {"grade": "secret", "is_sensitive_personal": True}

    response = client.put(
        f"{URL}/contacts/title", json=body, headers=org.headers("owner")
    )

    listed = client.get(URL, headers=org.headers("compliance")).json()["fields"]
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "policy_change")
    ).one()
    assert response.status_code == 200
    assert next(
        f for f in listed if f["table"] == "contacts" and f["column"] == "title"
    ) == {
        "table": "contacts",
        "column": "title",
        "level": "general",
        "level_label": "一般数据",
        "grade": "secret",
        "is_personal": True,
        "is_sensitive_personal": True,
        "mask_format": "text",
    }
    assert (entry.username, entry.resource, entry.record_ids) == (
        "owner",
        "catalogue",
        ["contacts.title"],
    )
    assert entry.detail == "general/internal/pi/text -> general/secret/pi,spi/text"


def test_compliance_may_read_but_not_edit_the_catalogue(
    client: TestClient, org: Org
) -> None:
    """Compliance reads the catalogue; its PUT is refused; a rep may not read it."""
    put = client.put(
        f"{URL}/contacts/phone",
        json={"grade": "public"},
        headers=org.headers("compliance"),
    )

    read = client.get(URL, headers=org.headers("compliance"))
    by_rep = client.get(URL, headers=org.headers("rep_a1"))
    assert put.status_code == 403
    assert read.status_code == 200
    assert by_rep.status_code == 403


def test_a_reclassification_that_cannot_be_masked_is_refused(
    client: TestClient, org: Org
) -> None:
    """A required amount cannot become confidential; unknown grades are refused."""
    amount = client.put(
        f"{URL}/opportunities/amount",
        json={"grade": "confidential"},
        headers=org.headers("owner"),
    )
    unknown = client.put(
        f"{URL}/contacts/phone", json={"grade": "top"}, headers=org.headers("owner")
    )
    absent = client.put(
        f"{URL}/contacts/nothing",
        json={"grade": "public"},
        headers=org.headers("owner"),
    )

    assert amount.status_code == 422
    assert unknown.status_code == 422
    assert absent.status_code == 404


def test_a_reclassified_field_is_masked_at_once(client: TestClient, org: Org) -> None:
    """After the data owner makes account phones confidential, a director sees stars."""
    created = client.post(
        "/api/v1/accounts",
        json={"name": "星辰科技有限公司", "phone": "02112345678"},
        headers=org.headers("rep_a1"),
    ).json()
    client.put(
        f"{URL}/accounts/phone",
        json={"grade": "confidential", "mask_format": "phone"},
        headers=org.headers("owner"),
    )

    by_director = client.get(
        f"/api/v1/accounts/{created['id']}", headers=org.headers("director_east")
    )
    by_owner = client.get(
        f"/api/v1/accounts/{created['id']}", headers=org.headers("rep_a1")
    )

    assert by_director.json()["phone"] == "021****5678"
    assert by_owner.json()["phone"] == "02112345678"
