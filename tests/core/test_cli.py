"""The waggle command: happy paths and the mapping of domain errors to exit codes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from waggle.cli import main


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    return database_url


def test_user_and_token_commands_give_a_working_token(
    cli_env: str, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`user create` then `token create` prints a token the API accepts."""
    main(
        [
            "user",
            "create",
            "王经理",
            "--role",
            "manager",
            "--role",
            "rep",
            "--password",
            "long enough pass",
        ]
    )
    capsys.readouterr()
    main(["token", "create", "王经理", "--name", "cli"])
    token = capsys.readouterr().out.strip()

    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})

    assert me.json()["roles"] == ["manager", "rep"]
    assert me.json()["username"] == "王经理"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["user", "create", "x", "--role", "king", "--password", "long enough pass"],
            5,
            "roles ['king'] are not valid",
        ),
        (["token", "create", "nobody"], 3, "user 'nobody' does not exist"),
        (
            ["token", "create", "nobody", "--as", "ghost"],
            3,
            "user 'ghost' does not exist",
        ),
    ],
)
def test_domain_errors_become_one_line_and_an_exit_code(
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    """A domain error prints one line on stderr and exits with its kind's code."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    err = capsys.readouterr().err
    assert exit_info.value.code == code
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_pipeline_apply_rejects_a_bad_file(
    cli_env: str,
    tmp_path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    """A pipeline file without a won stage is refused with the reason."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "key: x\nname: X\nstages:\n"
        "  - {key: a, name: 甲, name_en: A, probability: 10}\n"
        "  - {key: b, name: 乙, name_en: B, probability: 0, is_lost: true}\n",
        encoding="utf-8",
    )

    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "apply", str(path)])

    assert exit_info.value.code == 5
    assert "needs one stage with is_won: true" in capsys.readouterr().err
