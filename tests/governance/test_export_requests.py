"""Export requests: pending until compliance decides, then a doubly signed package."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account
from waggle.cli import main
from waggle.core.actor import Actor, system_actor
from waggle.core.db import transaction
from waggle.core.errors import Conflict, PolicyDenied
from waggle.core.settings import Settings
from waggle.crm.service import CONTACTS
from waggle.governance.chain import verify_chain
from waggle.governance.export_requests import (
    APPROVED,
    PENDING,
    REJECTED,
    approve_export_request,
    export_package_path,
    exportable_resources,
    list_export_requests,
    reject_export_request,
    request_export,
)
from waggle.governance.models import AuditEntry, ExportRequest
from waggle.governance.packages import verify_package
from waggle.governance.records import create_record
from waggle.identity.service import actor_for_user, create_user

PURPOSE = "季度经营分析：华东大区客户名单"


def _seed(sessions: sessionmaker[Session], org: Org) -> None:
    with transaction(sessions) as session:
        add_account(session, org.actors["rep_a1"], "上海星河机械有限公司")
        add_account(session, org.actors["rep_a2"], "杭州云帆科技股份有限公司")
        add_account(session, org.actors["rep_w1"], "成都天府软件有限公司")


def _request(sessions: sessionmaker[Session], actor: Actor) -> int:
    with transaction(sessions) as session:
        return request_export(session, actor, resource="accounts", purpose=PURPOSE).id


def _approve(
    sessions: sessionmaker[Session], org: Org, request_id: int, settings: Settings
) -> ExportRequest:
    with transaction(sessions) as session:
        return approve_export_request(
            session, org.actors["compliance"], request_id, settings=settings
        )


def _package(
    sessions: sessionmaker[Session], org: Org, request_id: int, settings: Settings
) -> Path:
    with transaction(sessions) as session:
        return export_package_path(
            session, org.actors["manager_a"], request_id, settings=settings
        )


def test_a_request_stays_pending_and_is_audited(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A manager's request is pending, keeps its Chinese purpose and is audited."""
    request_id = _request(sessions, org.actors["manager_a"])

    with sessions() as session:
        found = session.get(ExportRequest, request_id)
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.resource == "export_requests",
                AuditEntry.action == "create",
            )
        ).one()

    assert found is not None
    assert (found.status, found.purpose, found.requested_by) == (
        PENDING,
        PURPOSE,
        "manager_a",
    )
    assert (found.package_id, found.decided_by) == (None, None)
    assert (entry.username, entry.record_ids) == ("manager_a", [str(request_id)])


def test_approval_builds_a_package_both_sign_with_the_export_audit_row(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """Approval exports the requester's team rows, signed by requester and officer."""
    _seed(sessions, org)
    request_id = _request(sessions, org.actors["manager_a"])

    approved = _approve(sessions, org, request_id, settings)
    path = _package(sessions, org, request_id, settings)
    result = verify_package(path)

    assert (approved.status, approved.decided_by, approved.row_count) == (
        APPROVED,
        "compliance",
        2,
    )
    assert result.is_valid, result.problems
    assert [(s.role, s.name) for s in result.verified_signers] == [
        ("exporter", "manager_a"),
        ("compliance_officer", "compliance"),
    ]
    assert result.audit_entry is not None
    assert (
        result.audit_entry["action"],
        result.audit_entry["resource"],
        result.audit_entry["username"],
        result.audit_entry["seq"],
    ) == ("export", "accounts", "manager_a", approved.audit_seq)
    with zipfile.ZipFile(path) as archive:
        rows = list(
            csv.DictReader(io.StringIO(archive.read("data/accounts.csv").decode()))
        )
        described = json.loads(archive.read("data/request.json"))
    assert sorted(row["name"] for row in rows) == [
        "上海星河机械有限公司",
        "杭州云帆科技股份有限公司",
    ]
    assert (described["purpose"], described["approved_by"]) == (PURPOSE, "compliance")


def test_the_chain_stays_intact_after_an_approval_and_a_download(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """The export row chained early and the download row both verify in the chain."""
    _seed(sessions, org)
    request_id = _request(sessions, org.actors["manager_a"])
    approved = _approve(sessions, org, request_id, settings)

    _package(sessions, org, request_id, settings)
    with sessions() as session:
        report = verify_chain(session)
        actions = list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.seq >= (approved.audit_seq or 0) - 1)
                .order_by(AuditEntry.seq)
            )
        )

    assert report.problem is None
    assert actions == ["approve", "export", "download"]


def test_exported_contacts_carry_the_requesters_masks(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """A manager's export shows a rep's contact phone partly starred."""
    with transaction(sessions) as session:
        rep = org.actors["rep_a1"]
        account_id = add_account(session, rep, "上海星河机械有限公司")
        create_record(
            session,
            rep,
            CONTACTS,
            {"account_id": account_id, "name": "王芳", "phone": "13812345678"},
        )
    with transaction(sessions) as session:
        request_id = request_export(
            session, org.actors["manager_a"], resource="contacts", purpose=PURPOSE
        ).id

    _approve(sessions, org, request_id, settings)
    path = _package(sessions, org, request_id, settings)

    with zipfile.ZipFile(path) as archive:
        text = archive.read("data/contacts.csv").decode()
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert (row["name"], row["phone"]) == ("王芳", "138****5678")


def test_the_requester_may_not_approve_their_own_request(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """A sales-ops officer who is also compliance cannot approve what they asked."""
    with transaction(sessions) as session:
        user = create_user(
            session,
            system_actor("test"),
            username="ops_compliance",
            password="correct horse battery",
            roles=["sales_ops", "compliance"],
        )
        both = actor_for_user(user)
    request_id = _request(sessions, both)

    with pytest.raises(PolicyDenied) as refused, transaction(sessions) as session:
        approve_export_request(session, both, request_id, settings=settings)

    assert refused.value.code == "separation_of_duties"
    with sessions() as session:
        found = session.get(ExportRequest, request_id)
        assert found is not None and found.status == PENDING
    assert not (settings.data_dir / "exports").exists() or not any(
        (settings.data_dir / "exports").iterdir()
    )


@pytest.mark.parametrize("username", ["owner", "admin", "manager_a", "director_east"])
def test_only_compliance_may_approve(
    sessions: sessionmaker[Session], org: Org, settings: Settings, username: str
) -> None:
    """The data owner, IT and the business side are refused the approval."""
    request_id = _request(sessions, org.actors["manager_b"])

    with pytest.raises(PolicyDenied) as refused, transaction(sessions) as session:
        approve_export_request(
            session, org.actors[username], request_id, settings=settings
        )

    assert (refused.value.action, refused.value.resource) == (
        "approve",
        "export_requests",
    )


def test_a_rejected_request_yields_no_package(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """A rejection keeps its reason; no package exists and approving later fails."""
    request_id = _request(sessions, org.actors["manager_a"])

    with transaction(sessions) as session:
        rejected = reject_export_request(
            session, org.actors["compliance"], request_id, reason="用途不明确"
        )
    with pytest.raises(Conflict) as no_package:
        _package(sessions, org, request_id, settings)
    with pytest.raises(Conflict) as decided:
        _approve(sessions, org, request_id, settings)

    assert (rejected.status, rejected.reason, rejected.package_id) == (
        REJECTED,
        "用途不明确",
        None,
    )
    assert no_package.value.code == "export_not_approved"
    assert decided.value.code == "export_already_decided"
    assert not (settings.data_dir / "exports").exists()


def test_requesters_see_their_own_requests_and_compliance_sees_all(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A manager lists only their requests; compliance lists everyone's."""
    first = _request(sessions, org.actors["manager_a"])
    second = _request(sessions, org.actors["manager_b"])

    with transaction(sessions) as session:
        own = [r.id for r in list_export_requests(session, org.actors["manager_a"])]
        every = [r.id for r in list_export_requests(session, org.actors["compliance"])]

    assert own == [first]
    assert every == [second, first]


def test_only_requester_and_compliance_may_download(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """Another manager is refused the package of manager_a's approved export."""
    request_id = _request(sessions, org.actors["manager_a"])
    _approve(sessions, org, request_id, settings)

    with pytest.raises(PolicyDenied), transaction(sessions) as session:
        export_package_path(
            session, org.actors["manager_b"], request_id, settings=settings
        )


def test_accounts_and_contacts_are_exportable() -> None:
    """The exportable resources are the policy's exportable tables."""
    found = exportable_resources()

    assert {"accounts", "contacts", "opportunities"} <= set(found)
    assert "export_requests" not in found


def test_the_api_flow_from_request_to_download(
    client: TestClient, org: Org, tmp_path: Path
) -> None:
    """POST, approve and download over HTTP; a rep is refused the list."""
    created = client.post(
        "/api/v1/governance/export-requests",
        json={"resource": "accounts", "purpose": PURPOSE},
        headers=org.headers("manager_a"),
    )
    request_id = created.json()["id"]
    refused = client.get(
        "/api/v1/governance/export-requests", headers=org.headers("rep_a1")
    )
    early = client.get(
        f"/api/v1/governance/export-requests/{request_id}/package",
        headers=org.headers("manager_a"),
    )
    approved = client.post(
        f"/api/v1/governance/export-requests/{request_id}/approve",
        headers=org.headers("compliance"),
    )
    downloaded = client.get(
        f"/api/v1/governance/export-requests/{request_id}/package",
        headers=org.headers("manager_a"),
    )
    one = client.get(
        f"/api/v1/governance/export-requests/{request_id}",
        headers=org.headers("compliance"),
    )
    path = tmp_path / "download.zip"
    path.write_bytes(downloaded.content)

    assert (created.status_code, created.json()["status"]) == (201, "pending")
    assert refused.status_code == 403
    assert early.status_code == 409
    assert (approved.status_code, approved.json()["status"]) == (200, "approved")
    assert downloaded.status_code == 200
    assert one.json()["package_id"] == approved.json()["package_id"]
    assert verify_package(path).is_valid


def test_the_api_rejects_with_a_reason(client: TestClient, org: Org) -> None:
    """Rejecting needs a reason; the owner may not reject."""
    created = client.post(
        "/api/v1/governance/export-requests",
        json={"resource": "accounts", "purpose": PURPOSE},
        headers=org.headers("manager_a"),
    ).json()
    url = f"/api/v1/governance/export-requests/{created['id']}/reject"

    by_owner = client.post(url, json={"reason": "不"}, headers=org.headers("owner"))
    empty = client.post(url, json={"reason": ""}, headers=org.headers("compliance"))
    rejected = client.post(
        url, json={"reason": "用途不明确"}, headers=org.headers("compliance")
    )

    assert by_owner.status_code == 403
    assert empty.status_code == 422
    assert (rejected.status_code, rejected.json()["reason"]) == (200, "用途不明确")


def test_the_cli_flow_ends_in_a_package_waggle_verify_accepts(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    sessions: sessionmaker[Session],
    org: Org,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """request, list, approve, download and verify from the command line."""
    _seed(sessions, org)
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    out = tmp_path / "package.zip"
    export = ["governance", "export"]

    main([*export, "request", "accounts", "--purpose", PURPOSE, "--as", "manager_a"])
    asked = capsys.readouterr().out
    number = asked.split()[2].rstrip(":")
    main([*export, "list", "--as", "compliance", "--status", "pending"])
    main([*export, "approve", number, "--as", "compliance"])
    main([*export, "download", number, "--out", str(out), "--as", "manager_a"])
    main(["verify", str(out)])
    lines = capsys.readouterr().out.splitlines()

    assert asked == f"export request {number}: accounts pending\n"
    assert lines[0] == f"{number}  pending  accounts  manager_a  {PURPOSE}"
    assert lines[1].startswith(f"export request {number} approved: package exp-")
    assert ", 2 rows, audit entry " in lines[1]
    assert lines[2] == f"wrote {out}  (check with: waggle verify {out})"
    assert lines[3].startswith("valid: exp-")
    assert lines[4].startswith("  signed by exporter: manager_a  ")
    assert lines[5].startswith("  signed by compliance_officer: compliance  ")


def test_the_cli_refuses_a_rep(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    org: Org,
    tmp_path: Path,
) -> None:
    """A rep asking for an export exits with the policy-denied code."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))

    with pytest.raises(SystemExit) as exited:
        main(
            [
                "governance",
                "export",
                "request",
                "accounts",
                "--purpose",
                "x",
                "--as",
                "rep_a1",
            ]
        )

    assert exited.value.code == 6


def test_the_cli_rejects_and_then_refuses_the_download(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    sessions: sessionmaker[Session],
    org: Org,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rejected request lists its state, and downloading it exits with 4."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    request_id = str(_request(sessions, org.actors["manager_a"]))
    export = ["governance", "export"]
    out = tmp_path / "x.zip"

    main(
        [*export, "reject", request_id, "--reason", "用途不明确", "--as", "compliance"]
    )
    main([*export, "list", "--as", "manager_a"])
    printed = capsys.readouterr().out.splitlines()
    with pytest.raises(SystemExit) as exited:
        main([*export, "download", request_id, "--out", str(out), "--as", "manager_a"])

    assert printed == [
        f"export request {request_id} rejected",
        f"{request_id}  rejected  accounts  manager_a  by compliance  {PURPOSE}",
    ]
    assert exited.value.code == 4
    assert not out.exists()


def test_a_package_of_an_approval_that_rolls_back_is_removed(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """Built, then the transaction fails: no package file stays on disk."""
    _seed(sessions, org)
    request_id = _request(sessions, org.actors["manager_a"])
    folder = settings.data_dir / "exports"

    with sessions() as session:
        approved = approve_export_request(
            session, org.actors["compliance"], request_id, settings=settings
        )
        built = folder / str(approved.package_file)
        existed = built.exists()
        session.rollback()

    assert (existed, built.exists()) == (True, False)
    with transaction(sessions) as session:
        assert session.get_one(ExportRequest, request_id).status == "pending"
