"""Signed export packages: building, and conformance of `waggle verify` and of
the OpenSSL procedure the package's README lists.

Every corrupted variant is checked both ways: `verify_package` must name the
expected first problem, and the README's OpenSSL commands (the procedure of
the genuine package, run as a person with the registered fingerprints would)
must fail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from waggle.core.actor import system_actor
from waggle.core.errors import Conflict, InvalidInput, PolicyDenied
from waggle.governance import AuditEntry, record_audit
from waggle.governance.crypto import SigningKey, get_suite
from waggle.governance.packages import (
    Manifest,
    ManifestFile,
    PackageInvalid,
    Signer,
    audit_entry_as_dict,
    build_package,
    render_checksums,
    render_readme,
    verify_package,
)

GM, INTL = get_suite("gm"), get_suite("intl")
EXPORTER_KEY = GM.generate_signing_key()
OFFICER_KEY = GM.generate_signing_key()
INTRUDER_KEY = GM.generate_signing_key()
ACCOMPLICE_KEY = GM.generate_signing_key()
SIGNERS = [
    Signer(name="张三", role="exporter", key=EXPORTER_KEY),
    Signer(name="李四", role="compliance_officer", key=OFFICER_KEY),
]
DATA = {
    "accounts.csv": "名称,行业,年收入\n华为技术有限公司,通信,7042亿\n".encode(),
    "opportunities/2026-03.csv": b"id,stage,amount\n1,proposal,1200000\n",
}
AUDIT_ROW = {
    "id": 4711,
    "occurred_at": dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC),
    "username": "zhangsan",
    "roles": "sales_ops",
    "action": "export",
    "resource": "accounts",
    "record_ids": ["1", "2"],
    "result": "ok",
    "detail": "导出华东大区客户",
}
STANDARD_ID = "ID 1234567812345678"


# ---- helpers ----------------------------------------------------------------


def readme_commands(package: Path) -> list[str]:
    """Return the shell commands README.txt lists (lines starting with '$ ')."""
    lines = (package / "README.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip()[2:] for line in lines if line.strip().startswith("$ ")]


def registered_fingerprints(package: Path) -> dict[str, str]:
    """Return README's expected fingerprints, as an organisation registers them."""
    lines = (package / "README.txt").read_text(encoding="utf-8").splitlines()
    expected = [
        line.split(":", 1)[1].split()[0] for line in lines if "expected /" in line
    ]
    commands = [
        command
        for command in readme_commands(package)
        if command.startswith("openssl pkey -pubin")
    ]
    return dict(zip(commands, expected, strict=True))


def openssl_accepts(
    directory: Path, commands: list[str], pinned: dict[str, str]
) -> bool:
    """Follow the README procedure: every command exits 0 and each key's
    fingerprint equals the registered one."""
    for command in commands:
        result = subprocess.run(
            ["sh", "-c", command], cwd=directory, capture_output=True, check=False
        )
        if result.returncode != 0:
            return False
        if command in pinned and result.stdout.split()[:1] != [
            pinned[command].encode()
        ]:
            return False
    return True


def describe(directory: Path, path: str) -> ManifestFile:
    content = (directory / path).read_bytes()
    return ManifestFile(
        path=path,
        size=len(content),
        sm3=GM.hash(content).hex(),
        sha256=hashlib.sha256(content).hexdigest(),
    )


def resign(
    directory: Path,
    keys: dict[str, SigningKey],
    edit: Callable[[dict[str, Any]], None] = lambda manifest: None,
    distinguishing_ids: dict[str, bytes] | None = None,
) -> None:
    """Rewrite manifest.json with ``edit``, recompute CHECKSUMS and re-sign it,
    the way someone forging a package would."""
    document = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    edit(document)
    document["files"] = [
        describe(directory, f["path"]).model_dump() for f in document["files"]
    ]
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    (directory / "manifest.json").write_text(text, encoding="utf-8")
    entries = [ManifestFile(**entry) for entry in document["files"]]
    checksums = render_checksums([*entries, describe(directory, "manifest.json")])
    (directory / "CHECKSUMS").write_bytes(checksums)
    for role, key in keys.items():
        identity = (distinguishing_ids or {}).get(role)
        signature = (
            key.sign(checksums, distinguishing_id=identity)  # type: ignore[call-arg]
            if identity
            else key.sign(checksums)
        )
        (directory / "signatures" / f"{role}.sig").write_bytes(signature)
    manifest = Manifest.model_validate_json(text)
    (directory / "README.txt").write_text(render_readme(manifest), encoding="utf-8")


def flip_byte(path: Path, offset: int) -> None:
    content = bytearray(path.read_bytes())
    content[offset] ^= 0x01
    path.write_bytes(bytes(content))


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid gm package, built once and copied by each test that alters it."""
    destination = tmp_path_factory.mktemp("genuine") / "package"
    build_package(destination, files=DATA, signers=SIGNERS, audit_entry=AUDIT_ROW)
    return destination


@pytest.fixture
def copy(genuine, tmp_path) -> Path:
    return Path(shutil.copytree(genuine, tmp_path / "copy"))


# ---- the valid package ----------------------------------------------------


def test_a_built_package_verifies_with_waggle(genuine):
    """The genuine package has no problem and reports both signers and the audit row."""
    result = verify_package(genuine)

    assert result.problems == []
    assert [(s.role, s.name) for s in result.verified_signers] == [
        ("exporter", "张三"),
        ("compliance_officer", "李四"),
    ]
    assert result.audit_entry == {
        **AUDIT_ROW,
        "occurred_at": "2026-03-02T09:00:00+00:00",
    }


def test_a_built_package_verifies_with_the_readme_openssl_commands(genuine):
    """Every command the README lists succeeds, and prints the expected key digests."""
    commands = readme_commands(genuine)

    accepted = openssl_accepts(genuine, commands, registered_fingerprints(genuine))

    assert accepted
    assert len(commands) == 5  # two signatures, the file listing, two fingerprints
    assert "-sigopt distid:1234567812345678" in commands[0]


def test_the_manifest_records_digests_signers_and_separation_of_duties(genuine):
    """manifest.json lists each file with size, SM3 and SHA-256, and who signed."""
    manifest = json.loads((genuine / "manifest.json").read_text(encoding="utf-8"))

    paths = [entry["path"] for entry in manifest["files"]]

    assert paths == [
        "audit/export-entry.json",
        "data/accounts.csv",
        "data/opportunities/2026-03.csv",
        "keys/compliance_officer.pem",
        "keys/exporter.pem",
    ]
    assert manifest["files"][1] == describe(genuine, "data/accounts.csv").model_dump()
    assert manifest["signers"][0] == {
        "role": "exporter",
        "name": "张三",
        "suite": "gm",
        "algorithm": "SM2-with-SM3",
        "sm2_id": "1234567812345678",
        "public_key": "keys/exporter.pem",
        "fingerprint": GM.fingerprint(EXPORTER_KEY.public_key()),
        "signature": "signatures/exporter.sig",
    }
    assert manifest["separation_of_duties"]["exporter"] == "张三"
    assert manifest["separation_of_duties"]["approver"] == "李四"
    assert (genuine / "data" / "accounts.csv").read_bytes() == DATA["accounts.csv"]


# ---- corrupted variants ---------------------------------------------------


def _flip_data(directory: Path) -> None:
    flip_byte(directory / "data" / "accounts.csv", 10)


def _flip_manifest(directory: Path) -> None:
    flip_byte(directory / "manifest.json", 200)


def _remove_file(directory: Path) -> None:
    (directory / "data" / "opportunities" / "2026-03.csv").unlink()


def _add_data_file(directory: Path) -> None:
    (directory / "data" / "extra.csv").write_bytes(b"id\n99\n")


def _add_top_file(directory: Path) -> None:
    (directory / "notes.txt").write_text("未经签名的说明", encoding="utf-8")


def _drop_officer_signature(directory: Path) -> None:
    (directory / "signatures" / "compliance_officer.sig").unlink()


def _exporter_alone(directory: Path) -> None:
    def drop_officer(manifest: dict[str, Any]) -> None:
        manifest["signers"] = manifest["signers"][:1]
        manifest["files"] = [
            f for f in manifest["files"] if "compliance" not in f["path"]
        ]

    (directory / "keys" / "compliance_officer.pem").unlink()
    (directory / "signatures" / "compliance_officer.sig").unlink()
    resign(directory, {"exporter": EXPORTER_KEY}, drop_officer)


def _wrong_key_signature(directory: Path) -> None:
    checksums = (directory / "CHECKSUMS").read_bytes()
    (directory / "signatures" / "exporter.sig").write_bytes(
        INTRUDER_KEY.sign(checksums)
    )


def _wrong_key_and_its_public_key(directory: Path) -> None:
    _wrong_key_signature(directory)
    public = INTRUDER_KEY.public_key().public_pem()
    (directory / "keys" / "exporter.pem").write_bytes(public)


def _officer_signs_with_another_id(directory: Path) -> None:
    checksums = (directory / "CHECKSUMS").read_bytes()
    signature = OFFICER_KEY.sign(checksums, distinguishing_id=b"ALICE123@YAHOO.COM")  # type: ignore[call-arg]
    (directory / "signatures" / "compliance_officer.sig").write_bytes(signature)


def _officer_declares_another_id(directory: Path) -> None:
    def declare(manifest: dict[str, Any]) -> None:
        manifest["signers"][1]["sm2_id"] = "ALICE123@YAHOO.COM"

    keys = {"exporter": EXPORTER_KEY, "compliance_officer": OFFICER_KEY}
    resign(directory, keys, declare, {"compliance_officer": b"ALICE123@YAHOO.COM"})


VARIANTS = {
    "flipped byte in a data file": (
        _flip_data,
        "data/accounts.csv: SM3 and SHA-256 digests differ from manifest.json",
    ),
    "flipped byte in the manifest": (
        _flip_manifest,
        "manifest.json: SM3 and SHA-256 digests differ from CHECKSUMS",
    ),
    "missing file": (_remove_file, "data/opportunities/2026-03.csv is missing"),
    "extra data file": (_add_data_file, "unexpected file data/extra.csv"),
    "extra file at the top": (_add_top_file, "unexpected file notes.txt"),
    "one signature only (file removed)": (
        _drop_officer_signature,
        "signature of compliance_officer (李四) is missing:"
        " signatures/compliance_officer.sig",
    ),
    "one signature only (re-signed by the exporter alone)": (
        _exporter_alone,
        "no compliance_officer signed this package",
    ),
    "signature by a wrong key": (
        _wrong_key_signature,
        "signature of exporter (张三) does not verify over CHECKSUMS"
        f" (SM2-with-SM3, {STANDARD_ID})",
    ),
    "wrong key with its public key swapped in": (
        _wrong_key_and_its_public_key,
        f"keys/exporter.pem is {GM.fingerprint(INTRUDER_KEY.public_key())}, not the"
        " key manifest.json names for exporter (张三)",
    ),
    "SM2 signature made with another ID": (
        _officer_signs_with_another_id,
        "signature of compliance_officer (李四) does not verify over CHECKSUMS"
        f" (SM2-with-SM3, {STANDARD_ID})",
    ),
    "SM2 signature with another ID, declared and re-signed": (
        _officer_declares_another_id,
        "manifest.json: signer compliance_officer (李四) declares SM2 ID"
        " 'ALICE123@YAHOO.COM'; Waggle requires '1234567812345678'",
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_waggle_verify_rejects_each_corrupted_variant(genuine, copy, variant):
    """`verify_package` rejects the variant and names the expected first problem."""
    corrupt, expected = VARIANTS[variant]
    corrupt(copy)

    result = verify_package(copy)

    assert not result.is_valid
    assert result.problems[0].message == expected


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_readme_openssl_procedure_rejects_each_corrupted_variant(
    genuine, copy, variant
):
    """The genuine package's OpenSSL commands fail on the corrupted copy."""
    corrupt, _expected = VARIANTS[variant]
    commands, pinned = readme_commands(genuine), registered_fingerprints(genuine)
    corrupt(copy)

    accepted = openssl_accepts(copy, commands, pinned)

    assert not accepted


def test_a_package_re_signed_wholesale_by_other_keys_fails_only_against_pinned_keys(
    genuine, copy
):
    """Consistent but forged by two other keys: pinning rejects it both ways."""
    commands, pinned = readme_commands(genuine), registered_fingerprints(genuine)
    forged = {"exporter": INTRUDER_KEY, "compliance_officer": ACCOMPLICE_KEY}
    for role, key in forged.items():
        (copy / "keys" / f"{role}.pem").write_bytes(key.public_key().public_pem())

    def swap_fingerprints(manifest: dict[str, Any]) -> None:
        for signer in manifest["signers"]:
            signer["fingerprint"] = GM.fingerprint(forged[signer["role"]].public_key())

    resign(copy, forged, swap_fingerprints)
    unpinned = verify_package(copy)
    pinned_result = verify_package(
        copy, trusted_keys=[EXPORTER_KEY.public_key(), OFFICER_KEY.public_key()]
    )

    assert unpinned.is_valid  # without pinning, a self-consistent forgery passes
    assert pinned_result.problems[0].message == (
        f"key {GM.fingerprint(INTRUDER_KEY.public_key())} of exporter (张三)"
        " is not among the trusted keys"
    )
    assert openssl_accepts(copy, commands, {})
    assert not openssl_accepts(copy, commands, pinned)


def test_verify_names_every_problem_in_order(copy):
    """All problems are collected, the first being the earliest check that failed."""
    _drop_officer_signature(copy)
    _flip_data(copy)
    _add_data_file(copy)

    codes = [problem.code for problem in verify_package(copy).problems]

    assert codes == ["signature_missing", "file_digest", "file_unexpected"]


# ---- archives -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz"])
def test_archived_packages_verify_with_waggle_and_after_unpacking_with_openssl(
    tmp_path, suffix
):
    """.zip, .tar and .tar.gz packages verify as they are and, unpacked, by OpenSSL."""
    archive = tmp_path / f"package{suffix}"
    build_package(archive, files=DATA, signers=SIGNERS, audit_entry=AUDIT_ROW)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    unpack = ["unzip", "-q", str(archive), "-d", str(unpacked)]
    if suffix != ".zip":
        unpack = ["tar", "-xf", str(archive), "-C", str(unpacked)]
    subprocess.run(unpack, check=True)

    result = verify_package(archive)
    accepted = openssl_accepts(
        unpacked, readme_commands(unpacked), registered_fingerprints(unpacked)
    )

    assert result.problems == []
    assert accepted


def test_a_corrupted_zip_member_is_rejected(tmp_path):
    """A zip whose data member was altered fails verification (CRC or digest)."""
    archive = tmp_path / "package.zip"
    build_package(archive, files=DATA, signers=SIGNERS, audit_entry=AUDIT_ROW)
    with zipfile.ZipFile(archive) as reader:
        info = reader.getinfo("data/accounts.csv")
        offset = info.header_offset + 30 + len(info.filename.encode()) + 2
    flip_byte(archive, offset)

    result = verify_package(archive)

    assert [p.code for p in result.problems][:1] in (["unreadable"], ["file_digest"])
    assert "data/accounts.csv" in result.problems[0].message


def test_archives_with_unsafe_members_are_rejected(tmp_path, genuine):
    """A tar member named ../evil or a symbolic link makes the package invalid."""
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as writer:
        writer.add(genuine, arcname=".")
        link = tarfile.TarInfo("data/link.csv")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        writer.addfile(link)
        escape = tarfile.TarInfo("../evil.csv")
        writer.addfile(escape)

    messages = [problem.message for problem in verify_package(archive).problems]

    assert "data/link.csv is not a regular file" in messages
    assert "member '../evil.csv' contains an empty, '.' or '..' part" in messages


# ---- other suites -----------------------------------------------------------


@pytest.mark.parametrize(
    "suites", [("intl", "intl"), ("gm", "intl")], ids=["ed25519", "mixed"]
)
def test_ed25519_and_mixed_packages_verify_both_ways(tmp_path, suites):
    """Ed25519 signers (alone or beside SM2) verify with Waggle and OpenSSL."""
    exporter, officer = (get_suite(name).generate_signing_key() for name in suites)
    signers = [
        Signer(name="Alice", role="exporter", key=exporter),
        Signer(name="Bob", role="compliance_officer", key=officer),
    ]
    destination = tmp_path / "package"
    build_package(destination, files=DATA, signers=signers, audit_entry=AUDIT_ROW)

    result = verify_package(destination)
    commands = readme_commands(destination)

    assert result.problems == []
    assert "pkeyutl -verify" in commands[1]
    assert openssl_accepts(destination, commands, registered_fingerprints(destination))
    (destination / "signatures" / "compliance_officer.sig").write_bytes(bytes(64))
    assert not verify_package(destination).is_valid
    assert not openssl_accepts(destination, commands, {})


# ---- building rules ---------------------------------------------------------


def test_the_exporter_cannot_approve_their_own_export(tmp_path):
    """The same person (or the same key) in both roles is refused."""
    same_person = [
        Signer(name="张三", role="exporter", key=EXPORTER_KEY),
        Signer(name=" 张三 ", role="compliance_officer", key=OFFICER_KEY),
    ]
    same_key = [
        Signer(name="张三", role="exporter", key=EXPORTER_KEY),
        Signer(name="李四", role="compliance_officer", key=EXPORTER_KEY),
    ]

    with pytest.raises(PolicyDenied, match="cannot both export and approve"):
        build_package(
            tmp_path / "a", files=DATA, signers=same_person, audit_entry=AUDIT_ROW
        )
    with pytest.raises(PolicyDenied, match="share one key"):
        build_package(
            tmp_path / "b", files=DATA, signers=same_key, audit_entry=AUDIT_ROW
        )
    assert sorted(tmp_path.iterdir()) == []


def test_a_package_needs_both_required_roles(tmp_path):
    """Without a compliance officer there is no package."""
    with pytest.raises(InvalidInput, match=r"lack the roles \['compliance_officer'\]"):
        build_package(
            tmp_path / "p", files=DATA, signers=SIGNERS[:1], audit_entry=AUDIT_ROW
        )


def test_verify_rejects_a_forged_package_where_one_person_holds_both_roles(copy):
    """A hand-made package signed by one person in both roles is refused."""

    def same_person(manifest: dict[str, Any]) -> None:
        manifest["signers"][1]["name"] = "张三"

    resign(
        copy, {"exporter": EXPORTER_KEY, "compliance_officer": OFFICER_KEY}, same_person
    )

    problems = verify_package(copy).problems

    assert [p.message for p in problems] == [
        "张三 cannot both export and approve (separation of duties)"
    ]


@pytest.mark.parametrize(
    "name", ["../escape.csv", "/abs.csv", "a\\b.csv", "a//b", "x\n.csv"]
)
def test_data_file_names_must_be_safe_relative_paths(tmp_path, name):
    """Names that could escape data/ or break the OpenSSL listing are refused."""
    with pytest.raises(InvalidInput, match="data file name"):
        build_package(
            tmp_path / "p", files={name: b"x"}, signers=SIGNERS, audit_entry=AUDIT_ROW
        )


def test_an_existing_destination_is_never_overwritten(genuine):
    """Building onto an existing path is a conflict."""
    with pytest.raises(Conflict, match="already exists"):
        build_package(genuine, files=DATA, signers=SIGNERS, audit_entry=AUDIT_ROW)


def test_files_can_be_copied_from_disk(tmp_path):
    """A Path source is copied into data/ byte for byte."""
    source = tmp_path / "客户导出.csv"
    source.write_bytes("编号,名称\n1,腾讯\n".encode())
    destination = tmp_path / "package"

    build_package(
        destination,
        files={"客户导出.csv": source},
        signers=SIGNERS,
        audit_entry=AUDIT_ROW,
    )

    assert (destination / "data" / "客户导出.csv").read_bytes() == source.read_bytes()
    assert verify_package(destination).is_valid


def test_the_audit_row_of_the_export_goes_into_the_package(sessions, tmp_path):
    """An AuditEntry written through the governance seam is packaged whole."""
    with sessions() as session:
        entry = record_audit(
            session,
            system_actor("export"),
            action="export",
            resource="accounts",
            record_ids=[7, 8],
        )
        session.commit()
        row = audit_entry_as_dict(session.get(AuditEntry, entry.id))
    destination = tmp_path / "package"

    build_package(destination, files=DATA, signers=SIGNERS, audit_entry=row)
    packaged = verify_package(destination).audit_entry

    assert packaged is not None
    assert packaged["action"] == "export"
    assert packaged["record_ids"] == ["7", "8"]
    assert packaged["id"] == row["id"]
    assert dt.datetime.fromisoformat(packaged["occurred_at"]) == row["occurred_at"]


# ---- the command --------------------------------------------------------------


def run_waggle(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `waggle` with the governance commands registered, as the lead wires them."""
    program = (
        "import sys, waggle.cli as cli\n"
        "from waggle.governance.cli import register_commands\n"
        "cli.register(register_commands)\n"
        "sys.exit(cli.main())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_waggle_verify_exits_zero_for_a_valid_package(genuine):
    """`waggle verify PACKAGE` prints the signers and exits 0."""
    result = run_waggle("verify", str(genuine))

    assert result.returncode == 0
    assert result.stdout.startswith("valid: exp-")
    assert "signed by compliance_officer: 李四" in result.stdout


def test_waggle_verify_prints_one_line_naming_the_first_problem(copy):
    """An invalid package exits non-zero with exactly one line on stderr."""
    _drop_officer_signature(copy)
    _flip_data(copy)

    result = run_waggle("verify", str(copy))

    assert result.returncode == 5
    assert result.stderr == (
        "invalid: signature of compliance_officer (李四) is missing:"
        " signatures/compliance_officer.sig\n"
    )


def test_waggle_verify_with_trust_refuses_unknown_signer_keys(genuine, tmp_path):
    """--trust pins signer keys; a package by other keys is refused."""
    pem = tmp_path / "trusted.pem"
    pem.write_bytes(INTRUDER_KEY.public_key().public_pem())

    result = run_waggle("verify", str(genuine), "--trust", str(pem))

    assert result.returncode == 5
    assert "is not among the trusted keys" in result.stderr


def test_package_invalid_names_the_first_problem(copy):
    """raise_if_invalid raises PackageInvalid with the first problem's message."""
    _remove_file(copy)

    with pytest.raises(PackageInvalid, match=r"2026-03\.csv is missing") as raised:
        verify_package(copy).raise_if_invalid()

    assert raised.value.code == "package_invalid"
