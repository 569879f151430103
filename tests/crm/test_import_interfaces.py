"""Import and export through the REST API and the ``waggle`` command."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import Org
from waggle.cli import main
from waggle.crm.tabular import neutralize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
PARENTS = ("regions", "departments", "employees", "products", "accounts", "contacts")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Path:
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    return tmp_path


def upload(client: TestClient, org: Org, resource: str, name: str) -> dict[str, int]:
    response = client.post(
        f"/api/v1/imports/{resource}",
        files={"file": (name, (FIXTURES / name).read_bytes(), "text/csv")},
        headers=org.headers("ops"),
    )
    assert response.status_code == 201, response.text
    summary: dict[str, int] = response.json()
    return summary


def load_parents(client: TestClient, org: Org) -> None:
    for resource in PARENTS:
        upload(client, org, resource, f"{resource}.csv")


def test_api_import_reconciles_and_a_second_upload_changes_nothing(
    client: TestClient, org: Org
) -> None:
    """POST /imports/accounts inserts every row; the same file again is unchanged."""
    rows = len((FIXTURES / "accounts.csv").read_text("utf-8-sig").splitlines()) - 1
    for resource in PARENTS[:3]:
        upload(client, org, resource, f"{resource}.csv")

    first = upload(client, org, "accounts", "accounts.csv")
    second = upload(client, org, "accounts", "accounts.csv")

    assert (first["rows_read"], first["inserted"], first["rejected"]) == (rows, rows, 0)
    assert (second["rows_read"], second["unchanged"], second["inserted"]) == (
        rows,
        rows,
        0,
    )
    assert first["reconciles"] is second["reconciles"] is True


def test_api_rejects_are_listed_with_row_field_and_code_then_replayable(
    client: TestClient, org: Org
) -> None:
    """The broken GBK file's rejects come back from the API and can be replayed."""
    load_parents(client, org)
    summary = upload(client, org, "opportunities", "broken_opportunities_gbk.csv")

    listed = client.get(
        f"/api/v1/imports/{summary['run_id']}/rejects", headers=org.headers("ops")
    ).json()["items"]
    replayed = client.post(
        f"/api/v1/imports/{summary['run_id']}/replay", headers=org.headers("ops")
    )

    assert (summary["rows_read"], summary["inserted"], summary["rejected"]) == (
        12,
        3,
        9,
    )
    assert [(item["row_number"], item["code"]) for item in listed][:3] == [
        (3, "bad_date"),
        (4, "unknown_stage"),
        (5, "duplicate_key"),
    ]
    assert replayed.status_code == 201
    assert replayed.json()["rejected"] == 7  # nothing fixed, nothing overwritten
    assert replayed.json()["left_open"] == 2  # bad shape, repeated id
    kept = client.get(
        "/api/v1/opportunities?q=华东渠道拓展", headers=org.headers("ops")
    )
    assert [item["external_id"] for item in kept.json()["items"]] == ["B001"]


def test_api_export_neutralises_formulas_and_keeps_chinese(
    client: TestClient, org: Org
) -> None:
    """GET /exports/accounts streams a CSV whose cells can't start a formula."""
    load_parents(client, org)
    client.post(
        "/api/v1/accounts",
        json={"name": "=HYPERLINK(1)", "industry": "制造业"},
        headers=org.headers("ops"),
    )

    response = client.get(
        "/api/v1/exports/accounts?format=csv", headers=org.headers("ops")
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))

    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    names = {row["name"] for row in rows}
    assert "'=HYPERLINK(1)" in names
    assert any("有限公司" in name for name in names)


def test_a_rep_may_not_import_through_the_api(client: TestClient, org: Org) -> None:
    """Import is a sales-ops job: a rep's upload is refused with the policy code."""
    response = client.post(
        "/api/v1/imports/accounts",
        files={"file": ("accounts.csv", b"external_id,name\nX1,x\n", "text/csv")},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "policy_denied"


def test_cli_import_then_export_gives_the_rows_back(
    cli_env: Path, org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    """`waggle import accounts` then `waggle export accounts` round-trips the file."""
    for resource in PARENTS[:5]:
        main(["import", resource, str(FIXTURES / f"{resource}.csv"), "--as", "ops"])
    target = cli_env / "accounts-out.csv"

    main(["export", "accounts", str(target), "--as", "ops"])

    source = list(csv.DictReader(io.StringIO(_text(FIXTURES / "accounts.csv"))))
    exported = list(csv.DictReader(io.StringIO(_text(target))))
    assert [row["external_id"] for row in exported] == [
        row["external_id"] for row in source
    ]
    assert [row["name"] for row in exported] == [
        neutralize(row["name"]) for row in source
    ]


def test_cli_import_of_a_missing_file_is_one_line_and_exit_code(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that does not exist ends the command with one line and code 5."""
    with pytest.raises(SystemExit) as ended:
        main(["import", "accounts", str(cli_env / "nope.csv")])

    assert ended.value.code == 5
    message = capsys.readouterr().err
    assert message.startswith("error (invalid_input): ")
    assert message.count("\n") == 1
    assert "nope.csv: cannot read the file" in message


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig")
