"""Signed export packages, verifiable offline by Waggle and by stock OpenSSL.

A package is a directory (or the same tree in a .zip, .tar or .tar.gz)::

    README.txt                 how to verify with OpenSSL (not signed)
    CHECKSUMS                  SM3 lines, then SHA-256 lines, `openssl dgst -r`
                               format, for every file below; this is what the
                               signers sign
    manifest.json              per-file sizes and SM3/SHA-256 digests, signers
                               (name, role, suite, key fingerprint), separation
                               of duties, where the audit entry is
    audit/export-entry.json    the audit row of the export
    data/...                   the exported files
    keys/<role>.pem            each signer's public key
    signatures/<role>.sig      each signer's signature over CHECKSUMS
                               (DER for SM2, 64 raw bytes for Ed25519)

Signing CHECKSUMS rather than manifest.json lets OpenSSL check the whole chain
mechanically: verify the signatures over CHECKSUMS, then recompute CHECKSUMS
from the files on disk and compare byte for byte. manifest.json is one of the
files CHECKSUMS lists, so it is signed too.

Every package needs an ``exporter`` and a ``compliance_officer`` signature,
by two different people holding two different keys.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import inspect

from waggle.core.clock import now
from waggle.core.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from waggle.governance.crypto import (
    CryptoError,
    SigningKey,
    VerifyingKey,
    fingerprint,
    get_suite,
)
from waggle.governance.crypto.sm2 import DEFAULT_DISTINGUISHING_ID
from waggle.governance.models import AuditEntry

logger = logging.getLogger(__name__)

FORMAT: Final = "waggle-export-package/1"
README = "README.txt"
CHECKSUMS: Final = "CHECKSUMS"
MANIFEST = "manifest.json"
AUDIT_ENTRY: Final = "audit/export-entry.json"
DATA_DIRECTORY = "data"
EXPORTER = "exporter"
COMPLIANCE_OFFICER = "compliance_officer"
REQUIRED_ROLES = (EXPORTER, COMPLIANCE_OFFICER)
SEPARATION_RULE = (
    "the exporter and the approving compliance officer are different people"
    " holding different keys"
)
SM2_ID = DEFAULT_DISTINGUISHING_ID.decode("ascii")
MAX_SMALL_FILE = 16 * 1024 * 1024
CHUNK = 1024 * 1024
_ROLE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_PACKAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_CHECKSUM_LINE = re.compile(r"([0-9a-f]{64}) \*\./(.+)")
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError)

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ManifestFile(_Strict):
    """One file of the package with its size and digests."""

    path: str
    size: int = Field(ge=0)
    sm3: Hex64
    sha256: Hex64


class ManifestSigner(_Strict):
    """One signer: who, in which role, with which key and suite."""

    role: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    name: str = Field(min_length=1, max_length=200)
    suite: Literal["gm", "intl"]
    algorithm: str
    sm2_id: str | None = None
    public_key: str
    fingerprint: str
    signature: str


class SeparationOfDuties(_Strict):
    """The rule the signers satisfy, and who held each side of it."""

    rule: str
    exporter: str
    approver: str


class Manifest(_Strict):
    """The content of manifest.json."""

    format: Literal["waggle-export-package/1"]
    package_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
    created_at: dt.datetime
    signed_document: Literal["CHECKSUMS"]
    audit_entry: Literal["audit/export-entry.json"]
    files: list[ManifestFile]
    signers: list[ManifestSigner]
    separation_of_duties: SeparationOfDuties


@dataclass(frozen=True)
class Signer:
    """A person signing a package: their key, their name and their role."""

    name: str
    role: str
    key: SigningKey


@dataclass(frozen=True)
class BuiltPackage:
    """What :func:`build_package` wrote."""

    path: Path
    manifest: Manifest
    checksums_sm3: str

    @property
    def package_id(self) -> str:
        return self.manifest.package_id


@dataclass(frozen=True)
class Problem:
    """One reason a package is invalid; ``code`` is stable, ``message`` one line."""

    code: str
    message: str


@dataclass
class PackageVerification:
    """The outcome of :func:`verify_package`; valid when there is no problem."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    manifest: Manifest | None = None
    audit_entry: dict[str, Any] | None = None
    verified_signers: list[ManifestSigner] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return not self.problems

    def raise_if_invalid(self) -> None:
        """Raise :class:`PackageInvalid` naming the first problem.

        Raises:
            PackageInvalid: the package has at least one problem.
        """
        if self.problems:
            first = self.problems[0]
            raise PackageInvalid(
                f"{self.path}: {first.message}", problems=list(self.problems)
            )


class PackageInvalid(InvalidInput):
    """A signed export package failed verification."""

    code = "package_invalid"


def new_package_id(at: dt.datetime | None = None) -> str:
    """Return a fresh package id such as ``exp-20260302T090000Z-1a2b3c4d``."""
    moment = (at or now()).astimezone(dt.UTC)
    return f"exp-{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def audit_entry_as_dict(entry: AuditEntry) -> dict[str, Any]:
    """Return every column of an audit row, ready for :func:`build_package`."""
    columns = inspect(entry).mapper.column_attrs
    return {column.key: getattr(entry, column.key) for column in columns}


def build_package(
    destination: Path,
    *,
    files: Mapping[str, bytes | Path],
    signers: Sequence[Signer],
    audit_entry: Mapping[str, Any],
    package_id: str | None = None,
) -> BuiltPackage:
    """Write a signed export package to ``destination``.

    ``files`` maps a name under ``data/`` (``/`` separates folders; Chinese is
    fine) to its content or to a file to copy. ``destination`` ending in
    ``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz`` gives an archive, anything else
    a directory. Each signer signs CHECKSUMS; each signature is checked before
    it is written.

    Raises:
        InvalidInput: a bad file name, no files, an empty audit entry, missing
            or repeated roles, or a bad package id.
        PolicyDenied: exporter and compliance officer are the same person or
            share a key (separation of duties).
        Conflict: ``destination`` exists.
        NotFound: a source file or the destination's folder does not exist.
    """
    _check_signers(signers)
    names = _data_paths(files)
    if not audit_entry:
        raise InvalidInput(
            "export package: audit_entry is empty; expected the audit row"
        )
    package_id = package_id or new_package_id()
    if not _PACKAGE_ID.fullmatch(package_id):
        raise InvalidInput(f"export package: package_id {package_id!r} is malformed")
    kind = _archive_kind(destination)
    if destination.exists():
        raise Conflict(f"export package: {destination} already exists")
    if not destination.parent.is_dir():
        raise NotFound(f"export package: folder {destination.parent} does not exist")

    staging = Path(tempfile.mkdtemp(prefix=".waggle-package-", dir=destination.parent))
    try:
        manifest, checksums = _stage(
            staging,
            files={names[name]: source for name, source in files.items()},
            signers=signers,
            audit_entry=audit_entry,
            package_id=package_id,
        )
        _publish(staging, destination, kind, manifest.created_at)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "export package built",
        extra={"package_id": package_id, "files": len(files), "path": str(destination)},
    )
    digest = get_suite("gm").hash(checksums).hex()
    return BuiltPackage(path=destination, manifest=manifest, checksums_sm3=digest)


def verify_package(
    path: Path, *, trusted_keys: Iterable[VerifyingKey] = ()
) -> PackageVerification:
    """Check a package offline and return every problem found, in order.

    The checks run in this order: manifest.json against its CHECKSUMS line,
    the manifest's form, each signer (role, SM2 ID, key, signature over
    CHECKSUMS), separation of duties, CHECKSUMS against the manifest, every
    file's size and digests, and last any file nobody listed. With
    ``trusted_keys`` each signer's key must also be one of them; without,
    a package re-signed wholesale by other keys passes, as OpenSSL's check
    does unless the fingerprints are compared.

    Raises:
        NotFound: nothing exists at ``path``.
    """
    trusted = {fingerprint(key) for key in trusted_keys}
    result = PackageVerification(path=path)
    with _open_source(path) as source:
        result.problems.extend(source.problems)
        if source.readable:
            _Verifier(source, trusted, result).run()
    # A missing key file is reported by the signer check and the file check.
    result.problems = list(dict.fromkeys(result.problems))
    logger.info(
        "export package verified",
        extra={"path": str(path), "problems": len(result.problems)},
    )
    return result


def render_checksums(entries: Iterable[ManifestFile]) -> bytes:
    """Return CHECKSUMS for ``entries`` exactly as the README's OpenSSL pipeline
    prints it: SM3 lines, then SHA-256 lines, paths in byte order."""
    ordered = sorted(entries, key=lambda entry: entry.path.encode("utf-8"))
    lines = [f"{entry.sm3} *./{entry.path}\n" for entry in ordered]
    lines += [f"{entry.sha256} *./{entry.path}\n" for entry in ordered]
    return "".join(lines).encode("utf-8")


# ---- building -------------------------------------------------------------


def _check_signers(signers: Sequence[Signer]) -> None:
    roles = [signer.role for signer in signers]
    for role in roles:
        if not _ROLE.fullmatch(role):
            raise InvalidInput(f"export package: signer role {role!r} is malformed")
    if len(set(roles)) != len(roles):
        raise InvalidInput(f"export package: signer roles {roles} repeat a role")
    missing = [role for role in REQUIRED_ROLES if role not in roles]
    if missing:
        raise InvalidInput(
            f"export package: signers lack the roles {missing}; every package"
            f" needs {list(REQUIRED_ROLES)}"
        )
    for signer in signers:
        if not signer.name.strip() or len(signer.name) > 200:
            raise InvalidInput(f"export package: signer {signer.role} has no name")
    violation = _separation_violation(
        [(s.role, s.name, fingerprint(s.key.public_key())) for s in signers]
    )
    if violation:
        raise PolicyDenied(
            f"export package: {violation}",
            code="separation_of_duties",
            action="export",
            resource="export_package",
        )


def _separation_violation(signers: Sequence[tuple[str, str, str]]) -> str | None:
    by_role = {role: (name, key) for role, name, key in signers}
    exporter, approver = by_role.get(EXPORTER), by_role.get(COMPLIANCE_OFFICER)
    if exporter and approver and _same_person(exporter[0], approver[0]):
        return f"{exporter[0]} cannot both export and approve (separation of duties)"
    keys = [key for _role, _name, key in signers]
    if len(set(keys)) != len(keys):
        return "two signers share one key (separation of duties)"
    return None


def _same_person(first: str, second: str) -> bool:
    return " ".join(first.split()).casefold() == " ".join(second.split()).casefold()


def _data_paths(files: Mapping[str, bytes | Path]) -> dict[str, str]:
    if not files:
        raise InvalidInput("export package: files is empty; expected at least one")
    paths: dict[str, str] = {}
    for name in files:
        problem = _name_problem(name)
        if problem:
            raise InvalidInput(f"export package: data file name {name!r} {problem}")
        paths[name] = f"{DATA_DIRECTORY}/{name}"
    folders = {path.rsplit("/", 1)[0] for path in paths.values()}
    for path in paths.values():
        if any(folder == path or folder.startswith(f"{path}/") for folder in folders):
            raise InvalidInput(f"export package: {path} is both a file and a folder")
    return paths


def _name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be a package member, or ``None``."""
    if not name or name.startswith("/") or "\\" in name:
        return "must be a relative path with '/' separators"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "contains a control character"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "contains an empty, '.' or '..' part"
    return None


def _stage(
    root: Path,
    *,
    files: Mapping[str, bytes | Path],
    signers: Sequence[Signer],
    audit_entry: Mapping[str, Any],
    package_id: str,
) -> tuple[Manifest, bytes]:
    for path, source in files.items():
        _write_member(root, path, source)
    _write_member(root, AUDIT_ENTRY, _json_bytes(audit_entry))
    for signer in signers:
        _write_member(
            root, _key_path(signer.role), signer.key.public_key().public_pem()
        )

    listed = [_describe(root, path) for path in _members_of(root)]
    manifest = Manifest(
        format=FORMAT,
        package_id=package_id,
        created_at=now().astimezone(dt.UTC),
        signed_document=CHECKSUMS,
        audit_entry=AUDIT_ENTRY,
        files=sorted(listed, key=lambda entry: entry.path.encode("utf-8")),
        signers=[_manifest_signer(signer) for signer in signers],
        separation_of_duties=_separation_record(signers),
    )
    _write_member(root, MANIFEST, _manifest_bytes(manifest))
    checksums = render_checksums([*manifest.files, _describe(root, MANIFEST)])
    _write_member(root, CHECKSUMS, checksums)

    for signer in signers:
        signature = signer.key.sign(checksums)
        # Check before publishing: a faulty signature must never leave the house.
        signer.key.public_key().verify(checksums, signature)
        _write_member(root, _signature_path(signer.role), signature)
    _write_member(root, README, render_readme(manifest).encode("utf-8"))
    return manifest, checksums


def _write_member(root: Path, name: str, source: bytes | Path) -> None:
    target = root.joinpath(*name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        target.write_bytes(source)
        return
    try:
        shutil.copyfile(source, target)
    except FileNotFoundError:
        raise NotFound(f"export package: source file {source} does not exist") from None


def _members_of(root: Path) -> list[str]:
    found = []
    for folder, _dirs, names in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        for name in names:
            found.append(name if relative == "." else f"{relative}/{name}")
    return sorted(found, key=lambda path: path.encode("utf-8"))


def _describe(root: Path, path: str) -> ManifestFile:
    with root.joinpath(*path.split("/")).open("rb") as stream:
        size, sm3, sha256 = _digest_stream(stream)
    return ManifestFile(path=path, size=size, sm3=sm3, sha256=sha256)


def _digest_stream(stream: IO[bytes], limit: int | None = None) -> tuple[int, str, str]:
    """Return size, SM3 and SHA-256 of ``stream``; stop reading past ``limit``."""
    sm3, sha256 = get_suite("gm").new_hash(), get_suite("intl").new_hash()
    size = 0
    while limit is None or size <= limit:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        sm3.update(chunk)
        sha256.update(chunk)
    return size, sm3.finalize().hex(), sha256.finalize().hex()


def _manifest_signer(signer: Signer) -> ManifestSigner:
    suite = get_suite(signer.key.suite)
    return ManifestSigner(
        role=signer.role,
        name=signer.name.strip(),
        suite=signer.key.suite,  # type: ignore[arg-type]  # get_suite vetted it
        algorithm=suite.signature_algorithm,
        sm2_id=suite.distinguishing_id,
        public_key=_key_path(signer.role),
        fingerprint=fingerprint(signer.key.public_key()),
        signature=_signature_path(signer.role),
    )


def _separation_record(signers: Sequence[Signer]) -> SeparationOfDuties:
    names = {signer.role: signer.name.strip() for signer in signers}
    return SeparationOfDuties(
        rule=SEPARATION_RULE,
        exporter=names[EXPORTER],
        approver=names[COMPLIANCE_OFFICER],
    )


def _key_path(role: str) -> str:
    return f"keys/{role}.pem"


def _signature_path(role: str) -> str:
    return f"signatures/{role}.sig"


def _manifest_bytes(manifest: Manifest) -> bytes:
    return manifest.model_dump_json(indent=2, exclude_none=True).encode("utf-8") + b"\n"


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    text = json.dumps(
        dict(document), ensure_ascii=False, indent=2, sort_keys=True, default=_jsonable
    )
    return text.encode("utf-8") + b"\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise InvalidInput(f"export package: audit entry value {value!r} is not JSON")


def _archive_kind(destination: Path) -> str:
    name = destination.name.lower()
    for suffix, kind in ((".tar.gz", "tgz"), (".tgz", "tgz"), (".tar", "tar")):
        if name.endswith(suffix):
            return kind
    return "zip" if name.endswith(".zip") else "directory"


def _publish(staging: Path, destination: Path, kind: str, at: dt.datetime) -> None:
    if kind == "directory":
        staging.rename(destination)
        return
    partial = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}")
    try:
        if kind == "zip":
            _write_zip(staging, partial, at)
        else:
            _write_tar(staging, partial, at, compressed=kind == "tgz")
        partial.rename(destination)
    finally:
        partial.unlink(missing_ok=True)
    shutil.rmtree(staging)


def _write_zip(staging: Path, target: Path, at: dt.datetime) -> None:
    stamp = at.timetuple()[:6]
    with zipfile.ZipFile(target, "x", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in _members_of(staging):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with (
                staging.joinpath(*name.split("/")).open("rb") as source,
                archive.open(info, "w") as sink,
            ):
                shutil.copyfileobj(source, sink, CHUNK)


def _write_tar(
    staging: Path, target: Path, at: dt.datetime, *, compressed: bool
) -> None:
    with (
        tarfile.open(target, "x:gz", format=tarfile.PAX_FORMAT)
        if compressed
        else tarfile.open(target, "x", format=tarfile.PAX_FORMAT)
    ) as archive:
        for name in _members_of(staging):
            path = staging.joinpath(*name.split("/"))
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mtime = int(at.timestamp())
            info.mode = 0o644
            with path.open("rb") as source:
                archive.addfile(info, source)


# ---- reading --------------------------------------------------------------


class _Source:
    """The members of a package, wherever they are stored."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.names: set[str] = set()
        self.readable = True

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def add(self, name: str) -> bool:
        """Register member ``name``; record a problem and refuse it if bad."""
        problem = _name_problem(name)
        if problem:
            self.problem("member_invalid", f"member {name!r} {problem}")
        elif name in self.names:
            self.problem("member_invalid", f"member {name} appears twice")
        else:
            self.names.add(name)
            return True
        return False

    def problem(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, message))


class _DirectorySource(_Source):
    def __init__(self, root: Path):
        super().__init__()
        self.root = root
        for folder, directories, names in os.walk(root):
            relative = Path(folder).relative_to(root).as_posix()
            prefix = "" if relative == "." else f"{relative}/"
            for name in sorted(directories):
                if Path(folder, name).is_symlink():
                    self.problem("member_invalid", f"{prefix}{name} is a symbolic link")
            for name in sorted(names):
                path = Path(folder, name)
                if path.is_symlink() or not path.is_file():
                    self.problem(
                        "member_invalid", f"{prefix}{name} is not a regular file"
                    )
                else:
                    self.add(prefix + name)

    def open(self, name: str) -> IO[bytes]:
        return self.root.joinpath(*name.split("/")).open("rb")


class _ZipSource(_Source):
    def __init__(self, archive: zipfile.ZipFile):
        super().__init__()
        self.archive = archive
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            if info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                self.problem("member_invalid", f"{info.filename} is a symbolic link")
            elif self.add(info.filename):
                self.members[info.filename] = info

    def open(self, name: str) -> IO[bytes]:
        return self.archive.open(self.members[name])


class _TarSource(_Source):
    def __init__(self, archive: tarfile.TarFile):
        super().__init__()
        self.archive = archive
        self.members: dict[str, tarfile.TarInfo] = {}
        for info in archive.getmembers():
            name = _strip_dot_slash(info.name)
            if info.isdir():
                continue
            if not info.isfile():
                self.problem("member_invalid", f"{name} is not a regular file")
            elif self.add(name):
                self.members[name] = info

    def open(self, name: str) -> IO[bytes]:
        stream = self.archive.extractfile(self.members[name])
        if stream is None:  # only for non-files, which were refused above
            raise OSError(f"{name} has no content")
        return stream


def _strip_dot_slash(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


@contextmanager
def _open_source(path: Path) -> Iterator[_Source]:
    if path.is_dir():
        yield _DirectorySource(path)
        return
    if not path.exists():
        raise NotFound(f"export package {path} does not exist")
    with ExitStack() as stack:
        try:
            if zipfile.is_zipfile(path):
                source: _Source = _ZipSource(stack.enter_context(zipfile.ZipFile(path)))
            elif tarfile.is_tarfile(path):
                source = _TarSource(stack.enter_context(tarfile.open(path, "r:*")))
            else:
                source = _unreadable("not a directory, .zip or .tar package")
        except _ARCHIVE_ERRORS as exc:
            source = _unreadable(f"archive cannot be read ({exc})")
        yield source


def _unreadable(reason: str) -> _Source:
    source = _Source()
    source.problem("unreadable", reason)
    source.readable = False
    return source


class _Verifier:
    """The ordered checks of one package."""

    def __init__(
        self, source: _Source, trusted: set[str], result: PackageVerification
    ) -> None:
        self.source = source
        self.trusted = trusted
        self.result = result

    def problem(self, code: str, message: str) -> None:
        self.result.problems.append(Problem(code, message))

    def run(self) -> None:
        checksums = self._read_small(CHECKSUMS)
        manifest_bytes = self._read_small(MANIFEST)
        if manifest_bytes is None:
            return
        listed = self._parse_checksums(checksums) if checksums is not None else None
        if listed is not None:
            self._check_manifest_digest(manifest_bytes, listed)
        manifest = self._parse_manifest(manifest_bytes)
        if manifest is None:
            return
        self.result.manifest = manifest
        self._check_signers(manifest, checksums)
        if listed is not None:
            self._check_listing(manifest, listed)
        self._check_files(manifest)
        self._check_unexpected(manifest)

    def _read_small(self, name: str) -> bytes | None:
        if name not in self.source.names:
            self.problem("file_missing", f"{name} is missing")
            return None
        try:
            with self.source.open(name) as stream:
                content = stream.read(MAX_SMALL_FILE + 1)
        except _ARCHIVE_ERRORS as exc:
            self.problem("unreadable", f"{name} cannot be read ({exc})")
            return None
        if len(content) > MAX_SMALL_FILE:
            self.problem("file_size", f"{name} is larger than {MAX_SMALL_FILE} bytes")
            return None
        return content

    def _parse_checksums(self, content: bytes) -> dict[str, tuple[str, str]] | None:
        try:
            lines = content.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            self.problem("checksums_invalid", f"{CHECKSUMS} is not UTF-8")
            return None
        matches = [_CHECKSUM_LINE.fullmatch(line) for line in lines[:-1]]
        half = len(matches) // 2
        if lines[-1] or not matches or len(matches) % 2 or not all(matches):
            self.problem("checksums_invalid", f"{CHECKSUMS} is malformed")
            return None
        entries = [
            ManifestFile(path=first[2], size=0, sm3=first[1], sha256=second[1])
            for first, second in zip(matches[:half], matches[half:], strict=True)
            if first is not None and second is not None
        ]
        if render_checksums(entries) != content:
            self.problem(
                "checksums_invalid",
                f"{CHECKSUMS} is not in canonical order (SM3 then SHA-256 lines,"
                " paths sorted, each once)",
            )
            return None
        return {entry.path: (entry.sm3, entry.sha256) for entry in entries}

    def _check_manifest_digest(
        self, content: bytes, listed: dict[str, tuple[str, str]]
    ) -> None:
        if MANIFEST not in listed:
            self.problem("checksums_mismatch", f"{CHECKSUMS} does not list {MANIFEST}")
            return
        actual = (
            get_suite("gm").hash(content).hex(),
            get_suite("intl").hash(content).hex(),
        )
        differing = _differing(actual, listed[MANIFEST])
        if differing:
            self.problem("file_digest", f"{MANIFEST}: {differing} from {CHECKSUMS}")

    def _parse_manifest(self, content: bytes) -> Manifest | None:
        try:
            manifest = Manifest.model_validate_json(content)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "document"
            self.problem("manifest_invalid", f"{MANIFEST}: {where}: {error['msg']}")
            return None
        paths = [entry.path for entry in manifest.files]
        for path in paths:
            problem = _name_problem(path)
            top = path.split("/", 1)[0]
            if problem or top not in (DATA_DIRECTORY, "audit", "keys"):
                self.problem(
                    "manifest_invalid", f"{MANIFEST}: file path {path!r} is not allowed"
                )
                return None
        if len(set(paths)) != len(paths) or AUDIT_ENTRY not in paths:
            self.problem(
                "manifest_invalid",
                f"{MANIFEST}: files repeat a path or lack {AUDIT_ENTRY}",
            )
            return None
        return manifest

    def _check_signers(self, manifest: Manifest, checksums: bytes | None) -> None:
        roles = [signer.role for signer in manifest.signers]
        for role in REQUIRED_ROLES:
            if role not in roles:
                self.problem("signer_missing", f"no {role} signed this package")
        if len(set(roles)) != len(roles):
            self.problem("manifest_invalid", f"{MANIFEST}: signer roles {roles} repeat")
        for signer in manifest.signers:
            self._check_signer(signer, checksums)
        violation = _separation_violation(
            [(s.role, s.name, s.fingerprint) for s in manifest.signers]
        )
        if violation:
            self.problem("separation_of_duties", violation)

    def _check_signer(self, signer: ManifestSigner, checksums: bytes | None) -> None:
        who = f"{signer.role} ({signer.name})"
        problem = self._signer_entry_problem(signer)
        if problem:
            code, reason = problem
            self.problem(code, f"{MANIFEST}: signer {who} {reason}")
            return
        key = self._load_key(signer, who)
        if key is None:
            return
        if signer.signature not in self.source.names:
            self.problem(
                "signature_missing",
                f"signature of {who} is missing: {signer.signature}",
            )
            return
        signature = self._read_small(signer.signature)
        if signature is None or checksums is None:
            return
        try:
            key.verify(checksums, signature)
        except CryptoError:
            detail = f", ID {SM2_ID}" if signer.suite == "gm" else ""
            self.problem(
                "signature_invalid",
                f"signature of {who} does not verify over {CHECKSUMS}"
                f" ({signer.algorithm}{detail})",
            )
            return
        self.result.verified_signers.append(signer)

    def _signer_entry_problem(self, signer: ManifestSigner) -> tuple[str, str] | None:
        suite = get_suite(signer.suite)
        key_path, signature_path = _key_path(signer.role), _signature_path(signer.role)
        if (signer.public_key, signer.signature) != (key_path, signature_path):
            return "manifest_invalid", f"must use {key_path} and {signature_path}"
        if signer.algorithm != suite.signature_algorithm:
            return (
                "manifest_invalid",
                f"names {signer.algorithm} for suite {suite.name}",
            )
        if signer.sm2_id != suite.distinguishing_id:
            return "sm2_id", (
                f"declares SM2 ID {signer.sm2_id!r}; Waggle requires"
                f" {suite.distinguishing_id!r}"
            )
        return None

    def _load_key(self, signer: ManifestSigner, who: str) -> VerifyingKey | None:
        pem = self._read_small(signer.public_key)
        if pem is None:
            return None
        try:
            key = get_suite(signer.suite).load_verifying_key(pem)
        except CryptoError as exc:
            self.problem("key_invalid", f"key of {who}: {exc.message}")
            return None
        actual = fingerprint(key)
        if actual != signer.fingerprint:
            self.problem(
                "key_mismatch",
                f"{signer.public_key} is {actual}, not the key {MANIFEST} names"
                f" for {who}",
            )
            return None
        if self.trusted and actual not in self.trusted:
            self.problem(
                "key_untrusted", f"key {actual} of {who} is not among the trusted keys"
            )
            return None
        return key

    def _check_listing(
        self, manifest: Manifest, listed: dict[str, tuple[str, str]]
    ) -> None:
        expected = {entry.path: (entry.sm3, entry.sha256) for entry in manifest.files}
        others = {path: pair for path, pair in listed.items() if path != MANIFEST}
        for path in sorted(
            set(expected) | set(others), key=lambda p: p.encode("utf-8")
        ):
            if expected.get(path) != others.get(path):
                self.problem(
                    "checksums_mismatch",
                    f"{CHECKSUMS} and {MANIFEST} disagree about {path}",
                )

    def _check_files(self, manifest: Manifest) -> None:
        for entry in manifest.files:
            if entry.path not in self.source.names:
                self.problem("file_missing", f"{entry.path} is missing")
                continue
            try:
                with self.source.open(entry.path) as stream:
                    size, sm3, sha256 = _digest_stream(stream, limit=entry.size)
            except _ARCHIVE_ERRORS as exc:
                self.problem("unreadable", f"{entry.path} cannot be read ({exc})")
                continue
            if size != entry.size:
                self.problem(
                    "file_size",
                    f"{entry.path}: size differs from {MANIFEST} ({entry.size} bytes)",
                )
                continue
            differing = _differing((sm3, sha256), (entry.sm3, entry.sha256))
            if differing:
                self.problem(
                    "file_digest", f"{entry.path}: {differing} from {MANIFEST}"
                )
            elif entry.path == AUDIT_ENTRY:
                self._load_audit_entry()

    def _load_audit_entry(self) -> None:
        content = self._read_small(AUDIT_ENTRY)
        try:
            document = json.loads(content or b"")
        except (json.JSONDecodeError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict) or not document:
            self.problem("audit_entry_invalid", f"{AUDIT_ENTRY} is not a JSON object")
            return
        self.result.audit_entry = document

    def _check_unexpected(self, manifest: Manifest) -> None:
        allowed = {MANIFEST, CHECKSUMS, README}
        allowed.update(entry.path for entry in manifest.files)
        allowed.update(signer.signature for signer in manifest.signers)
        for name in sorted(
            self.source.names - allowed, key=lambda n: n.encode("utf-8")
        ):
            self.problem("file_unexpected", f"unexpected file {name}")


def _differing(actual: tuple[str, str], expected: tuple[str, str]) -> str | None:
    """Say which digests differ ("SM3 and SHA-256 digests differ")."""
    labels = ("SM3", "SHA-256")
    names = [
        label for label, a, b in zip(labels, actual, expected, strict=True) if a != b
    ]
    if not names:
        return None
    verb = " digest differs" if len(names) == 1 else " digests differ"
    return " and ".join(names) + verb


# ---- README ----------------------------------------------------------------


def render_readme(manifest: Manifest) -> str:
    """Return README.txt: the package in brief and the OpenSSL commands that
    verify it offline, in English and Chinese."""
    signers = "\n".join(
        f"  - {signer.role}: {signer.name}  {signer.fingerprint}"
        for signer in manifest.signers
    )
    signature_commands = "\n".join(
        f"    $ {_openssl_signature_command(signer)}" for signer in manifest.signers
    )
    fingerprint_commands = "\n".join(
        f"    $ {_openssl_fingerprint_command(signer)}\n"
        f"      expected / 应为: {signer.fingerprint.split(':', 1)[1]}"
        f"  ({signer.role}, {signer.name})"
        for signer in manifest.signers
    )
    return _README_TEMPLATE.format(
        package_id=manifest.package_id,
        created_at=manifest.created_at.isoformat(),
        file_count=len(manifest.files),
        signers=signers,
        signature_commands=signature_commands,
        files_command=FILES_COMMAND,
        fingerprint_commands=fingerprint_commands,
    )


def _openssl_signature_command(signer: ManifestSigner) -> str:
    if signer.suite == "gm":
        return (
            f"openssl dgst -sm3 -verify {signer.public_key}"
            f" -sigopt distid:{SM2_ID} -signature {signer.signature} {CHECKSUMS}"
        )
    return (
        f"openssl pkeyutl -verify -pubin -inkey {signer.public_key} -rawin"
        f" -in {CHECKSUMS} -sigfile {signer.signature}"
    )


def _openssl_fingerprint_command(signer: ManifestSigner) -> str:
    digest = "sm3" if signer.suite == "gm" else "sha256"
    return (
        f"openssl pkey -pubin -in {signer.public_key} -outform DER"
        f" | openssl dgst -{digest} -r"
    )


FILES_COMMAND = (
    "for a in sm3 sha256; do find . -type f ! -path ./README.txt ! -path ./CHECKSUMS"
    " ! -path './signatures/*' -print0 | LC_ALL=C sort -z | xargs -0 openssl dgst"
    " -$a -r; done | cmp - CHECKSUMS"
)

_README_TEMPLATE = """\
Waggle signed export package / Waggle 签名导出包
================================================

Package / 导出包:  {package_id}
Created / 创建于:  {created_at}
Files / 文件数:    {file_count} (data, audit entry, signer keys / 数据、审计记录、公钥)
Signers / 签名人:
{signers}

What is signed / 签名内容
-------------------------
CHECKSUMS lists the SM3 digest and then the SHA-256 digest of every file except
README.txt, CHECKSUMS and signatures/, in the format of `openssl dgst -r`. Each
signer signs CHECKSUMS. manifest.json is one of the listed files; it records
every file's size and digests, the signers with their roles and key
fingerprints, the separation of duties and the audit entry of the export
(audit/export-entry.json). A valid package carries at least the signatures of
the exporter and of the approving compliance officer, two different people.
This README is not signed; the commands below are the same for every Waggle
package and depend only on the signers' roles and suites.

CHECKSUMS 依 `openssl dgst -r` 格式先列出 SM3 摘要、再列出 SHA-256 摘要，覆盖除
README.txt、CHECKSUMS 和 signatures/ 以外的每个文件；每位签名人对 CHECKSUMS 签名。
manifest.json 本身也在 CHECKSUMS 中，记录每个文件的大小和摘要、签名人及其角色和
公钥指纹、职责分离以及本次导出的审计记录（audit/export-entry.json）。有效的导出包
至少带有导出人和审批的合规专员两人的签名，且两人不能是同一人。本说明文件未签名；
以下命令对每个 Waggle 导出包都相同，只随签名人的角色和算法套件变化。

Verify offline with OpenSSL 3 / 用 OpenSSL 3 离线验证
-----------------------------------------------------
Run the commands in the package folder. Unpack an archive first:
`unzip PACKAGE.zip -d DIR` or `mkdir DIR && tar -xf PACKAGE.tar -C DIR`.
The package is valid only if every command exits with status 0.
在导出包目录中运行以下命令（压缩包请先解压）。每条命令的退出状态都为 0 时导出包才有效。

1. Signatures over CHECKSUMS (each prints "Verified OK" or
   "Signature Verified Successfully") / 验证签名：

{signature_commands}

2. Files: nothing altered, missing or added (no output) /
   文件未被修改、缺失或增加（无输出）：

    $ {files_command}

3. Signer keys: keys/ holds the keys the signers claim as theirs. Check each
   fingerprint against the one your organisation registered for that person,
   or run step 1 with your own copy of the key in place of keys/<role>.pem.
   签名人公钥：请将指纹与贵单位登记的该签名人公钥指纹核对，或在第 1 步中改用您自己
   保存的公钥。

{fingerprint_commands}

Waggle checks all of this with: waggle verify PACKAGE [--trust KEY.pem ...]
"""
