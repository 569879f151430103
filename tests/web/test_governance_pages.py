"""The governance pages: overview, catalogue, policies, approvals, audit log."""

from __future__ import annotations

import html
import re
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.web.helpers import log_in
from waggle.core.db import transaction
from waggle.core.settings import Settings
from waggle.governance.audit import sign_checkpoint
from waggle.governance.export_requests import request_export
from waggle.governance.models import AuditEntry, CatalogueOverride, ExportRequest
from waggle.governance.packages import verify_package

PURPOSE = "季度经营分析"


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", page))


def _sections(page: str) -> list[str]:
    return re.findall(r'data-section="([a-z]+)"', page)


def _request(sessions: sessionmaker[Session], org: Org) -> int:
    with transaction(sessions) as session:
        found = request_export(
            session, org.actors["manager_a"], resource="accounts", purpose=PURPOSE
        )
        return found.id


@pytest.mark.parametrize(
    ("username", "sections"),
    [
        ("owner", ["catalogue", "policies"]),
        ("compliance", ["catalogue", "policies", "approvals", "audit"]),
        ("auditor", ["catalogue", "policies", "approvals", "audit"]),
        ("admin", ["catalogue", "policies", "approvals"]),
        ("manager_a", ["approvals"]),
    ],
)
def test_the_overview_links_the_pages_each_role_opens(
    client: TestClient, org: Org, username: str, sections: list[str]
) -> None:
    """Each role sees links to exactly the governance pages its policy opens."""
    log_in(client, username)

    page = client.get("/governance")

    assert page.status_code == 200
    assert _sections(page.text) == sections


def test_the_overview_speaks_chinese_and_english(client: TestClient, org: Org) -> None:
    """The overview reads in Chinese by default and in English when chosen."""
    log_in(client, "compliance")

    chinese = _text(client.get("/governance").text)
    client.get("/lang/en")
    english = _text(client.get("/governance").text)

    assert "数据目录" in chinese and "导出审批" in chinese
    assert "Data catalogue" in english and "Export approvals" in english
    assert "数据目录" not in english


@pytest.mark.parametrize(
    "path",
    [
        "/governance",
        "/governance/catalogue",
        "/governance/policies",
        "/governance/approvals",
        "/governance/audit",
    ],
)
def test_a_rep_is_refused_every_governance_page(
    client: TestClient, org: Org, path: str
) -> None:
    """A sales rep gets the refusal page on each governance page."""
    log_in(client, "rep_a1")

    page = client.get(path)

    assert page.status_code == 403


def test_the_catalogue_shows_levels_grades_and_flags(
    client: TestClient, org: Org
) -> None:
    """Every field shows its level, grade and PI flags; compliance reads only."""
    log_in(client, "compliance")

    page = client.get("/governance/catalogue", params={"table": "contacts"})
    row = re.search(r'data-field="contacts.phone">(.*?)</tr>', page.text, re.S)

    assert page.status_code == 200
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", _text(row[1]))
    assert cells[2:6] == [
        '一般数据<span class="small muted"> · 一般</span>',
        '<span class="pill">机密</span>',
        "是",
        "否",
    ]
    assert "只读：仅数据所有者可以修改字段分级。" in _text(page.text)
    assert "/governance/catalogue/contacts/phone" not in page.text


def test_the_data_owner_edits_a_classification(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The data owner's form stores an override and the change is audited."""
    token = log_in(client, "owner")
    form = client.get(
        "/governance/catalogue", params={"table": "contacts", "edit": "contacts.title"}
    )

    saved = client.post(
        "/governance/catalogue/contacts/title",
        data={
            "csrf_token": token,
            "level": "important",
            "grade": "confidential",
            "is_personal": "on",
            "mask_format": "text",
        },
    )

    assert 'action="/governance/catalogue/contacts/title"' in form.text
    assert saved.status_code == 200
    assert "已保存 contacts.title 的分级。" in _text(saved.text)
    with sessions() as session:
        override = session.scalars(select(CatalogueOverride)).one()
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "policy_change")
        ).one()
    assert (override.column_name, override.level, override.grade) == (
        "title",
        "important",
        "confidential",
    )
    assert (override.is_personal, override.updated_by) == (True, "owner")
    assert entry.record_ids == ["contacts.title"]


def test_compliance_may_not_post_a_classification(client: TestClient, org: Org) -> None:
    """A compliance officer posting the catalogue form is refused."""
    token = log_in(client, "compliance")

    refused = client.post(
        "/governance/catalogue/contacts/title",
        data={"csrf_token": token, "level": "core", "grade": "secret"},
    )

    assert refused.status_code == 403


def test_a_classification_without_the_csrf_token_is_refused(
    client: TestClient, org: Org
) -> None:
    """The catalogue form needs the session's CSRF token."""
    log_in(client, "owner")

    refused = client.post(
        "/governance/catalogue/contacts/title",
        data={"level": "core", "grade": "secret", "mask_format": "text"},
    )

    assert refused.status_code == 403


def test_the_policy_page_shows_scopes_permissions_masking_and_aggregates(
    client: TestClient, org: Org
) -> None:
    """The policy page lists the shipped policy's sections and its version."""
    log_in(client, "auditor")
    client.get("/lang/en")

    page = client.get("/governance/policies")
    text = _text(page.text)
    approve = re.search(r'data-resource="export_requests">(.*?)</tr>', page.text, re.S)

    assert page.status_code == 200
    assert "Policy version: default" in text
    assert "WAGGLE_POLICY_FILE" in text
    assert 'data-role="rep"><td>Sales rep <code>rep</code></td><td>own</td>' in (
        page.text
    )
    assert approve is not None and "compliance" in approve[1]
    assert 'data-grade="secret"' in page.text
    assert 'data-aggregate="opportunities"' in page.text
    assert "Groups of fewer than 5 rows are suppressed" in text


def test_compliance_approves_from_the_page_and_the_requester_downloads(
    client: TestClient,
    sessions: sessionmaker[Session],
    org: Org,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Approving on the page builds the package the requester then downloads."""
    request_id = _request(sessions, org)
    token = log_in(client, "compliance")

    listed = client.get("/governance/approvals")
    approved = client.post(
        f"/governance/approvals/{request_id}/approve", data={"csrf_token": token}
    )
    client.post("/logout", data={"csrf_token": token})
    log_in(client, "manager_a")
    page = client.get("/governance/approvals")
    downloaded = client.get(f"/governance/approvals/{request_id}/package")
    path = tmp_path / "package.zip"
    path.write_bytes(downloaded.content)

    assert f'action="/governance/approvals/{request_id}/approve"' in listed.text
    assert PURPOSE in listed.text
    assert approved.status_code == 200
    assert f"已批准导出申请 #{request_id}，导出包已签名。" in _text(approved.text)
    assert f'href="/governance/approvals/{request_id}/package"' in page.text
    assert "/approve" not in page.text
    assert downloaded.status_code == 200
    assert zipfile.is_zipfile(path)
    result = verify_package(path)
    assert [s.role for s in result.verified_signers] == [
        "exporter",
        "compliance_officer",
    ]


def test_a_manager_requests_an_export_from_the_page(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The request form stores a pending request with the Chinese purpose."""
    token = log_in(client, "manager_a")

    page = client.post(
        "/governance/approvals",
        data={"csrf_token": token, "resource": "contacts", "purpose": PURPOSE},
    )

    with sessions() as session:
        found = session.scalars(select(ExportRequest)).one()
    assert page.status_code == 200
    assert (found.resource, found.purpose, found.status) == (
        "contacts",
        PURPOSE,
        "pending",
    )
    assert f"已提交导出申请 #{found.id}" in _text(page.text)


def test_compliance_rejects_with_a_reason_and_an_empty_reason_is_shown(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """A rejection keeps its reason; an empty reason is reported on the page."""
    request_id = _request(sessions, org)
    token = log_in(client, "compliance")
    client.get("/lang/en")

    empty = client.post(
        f"/governance/approvals/{request_id}/reject",
        data={"csrf_token": token, "reason": " "},
    )
    rejected = client.post(
        f"/governance/approvals/{request_id}/reject",
        data={"csrf_token": token, "reason": "用途不明确"},
    )

    assert empty.status_code == 422
    assert "reason must be 1 to 1000 characters" in _text(empty.text)
    assert f"Export request #{request_id} rejected." in _text(rejected.text)
    assert "用途不明确" in rejected.text


def test_the_data_owner_may_not_approve_from_the_page(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Posting an approval as the data owner is refused; the request stays pending."""
    request_id = _request(sessions, org)
    token = log_in(client, "owner")

    refused = client.post(
        f"/governance/approvals/{request_id}/approve", data={"csrf_token": token}
    )

    assert refused.status_code == 403
    with sessions() as session:
        found = session.get(ExportRequest, request_id)
        assert found is not None and found.status == "pending"


def test_the_audit_page_filters_by_actor_and_pages(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Filtering by actor and action shows only those entries, newest first."""
    for _ in range(3):
        _request(sessions, org)
    log_in(client, "auditor")

    page = client.get(
        "/governance/audit",
        params={"username": "manager_a", "action": "create", "since": "2000-01-01"},
    )
    seqs = [int(seq) for seq in re.findall(r'data-seq="(\d+)"', page.text)]
    with sessions() as session:
        expected = list(
            session.scalars(
                select(AuditEntry.seq)
                .where(
                    AuditEntry.username == "manager_a",
                    AuditEntry.action == "create",
                )
                .order_by(AuditEntry.seq.desc())
            )
        )

    assert page.status_code == 200
    assert seqs == expected
    assert len(seqs) == 3


def test_the_verify_button_shows_the_chain_and_latest_checkpoint(
    client: TestClient,
    sessions: sessionmaker[Session],
    org: Org,
    settings: Settings,
) -> None:
    """The HTMX verify shows the intact chain and the latest signed checkpoint."""
    _request(sessions, org)
    with transaction(sessions) as session:
        signed = sign_checkpoint(session, org.actors["admin"], settings=settings)
        assert signed is not None
        seq_to = signed.seq_to
    token = log_in(client, "compliance")
    client.get("/lang/en")

    panel = client.post(
        "/governance/audit/verify",
        data={"csrf_token": token},
        headers={"HX-Request": "true"},
    )

    text = _text(panel.text)
    assert panel.status_code == 200
    assert "<html" not in panel.text
    assert "The audit chain is intact:" in text
    assert "1 checkpoints, 1 signatures checked." in text
    assert f"Latest signed checkpoint: entries 1 to {seq_to}" in text
