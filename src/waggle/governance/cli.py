"""Governance commands: ``waggle verify``, ``waggle audit``, ``waggle governance``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from waggle.core.errors import InvalidInput, NotFound, WaggleError
from waggle.core.settings import load_settings
from waggle.governance.rls_cli import rls_app

governance_app = typer.Typer(help="Data sovereignty: keys and signed exports.")
keys_app = typer.Typer(help="Signing keys kept under the data directory.")
governance_app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(help="The tamper-evident audit log: verify, checkpoint.")
governance_app.add_typer(rls_app, name="rls")
export_app = typer.Typer(help="Export requests: ask, approve or reject, download.")
governance_app.add_typer(export_app, name="export")
AsUser = Annotated[
    str | None, typer.Option("--as", help="Act as this user; their policy applies.")
]

Suite = Annotated[str, typer.Option(help="gm (SM2/SM3/SM4) or intl (Ed25519/SHA-256).")]


def register_commands(app: typer.Typer) -> None:
    """Add ``waggle verify`` and ``waggle governance`` to the ``waggle`` command."""
    app.command("verify")(verify)
    from waggle.governance import aggregates_cli, lineage_cli

    lineage_cli.register(governance_app)
    aggregates_cli.register(governance_app)
    app.add_typer(governance_app, name="governance")
    app.add_typer(audit_app, name="audit")
    from waggle.governance.drill_cli import drill

    app.command("drill")(drill)
    from waggle.governance.retention_cli import register_retention_commands

    register_retention_commands(governance_app)


def verify(
    package: Annotated[Path, typer.Argument(help="Package folder, .zip or .tar.")],
    trust: Annotated[
        list[Path] | None,
        typer.Option(help="A signer's public key PEM to require; repeat for each."),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every problem, not just the first.")
    ] = False,
) -> None:
    """Verify a signed export package offline; exit 0 only if it is valid."""
    from waggle.governance.crypto import load_verifying_key
    from waggle.governance.packages import PackageInvalid, verify_package

    try:
        trusted = [load_verifying_key(_read(path)) for path in trust or []]
        result = verify_package(package, trusted_keys=trusted)
    except WaggleError as error:
        _refuse(error, [error.message])
    if result.problems or result.manifest is None:
        messages = [problem.message for problem in result.problems]
        _refuse(PackageInvalid(messages[0]), messages if show_all else messages[:1])

    manifest = result.manifest
    typer.echo(
        f"valid: {manifest.package_id} ({len(manifest.files)} files,"
        f" created {manifest.created_at.isoformat()})"
    )
    for signer in result.verified_signers:
        typer.echo(f"  signed by {signer.role}: {signer.name}  {signer.fingerprint}")
    entry = json.dumps(result.audit_entry, ensure_ascii=False, sort_keys=True)
    typer.echo(f"  audit entry: {entry}")
    if not trust:
        typer.echo("  note: signer keys not pinned; pass --trust KEY.pem to pin them")


@keys_app.command("create")
def keys_create(name: str, suite: Suite = "gm") -> None:
    """Create a signing key pair (private key file mode 0600)."""
    from waggle.governance.keystore import KeyStore

    stored = KeyStore.for_settings(load_settings()).create_signing_key(
        name, suite=suite
    )
    typer.echo(f"{stored.name}  {stored.algorithm}  {stored.fingerprint}")
    typer.echo(f"public key: {stored.public_path}")


@keys_app.command("list")
def keys_list() -> None:
    """List the stored signing keys with their fingerprints."""
    from waggle.governance.keystore import KeyStore

    for stored in KeyStore.for_settings(load_settings()).list_signing_keys():
        typer.echo(
            f"{stored.name}  {stored.algorithm}  {stored.fingerprint}"
            f"  {stored.public_path}"
        )


@audit_app.command("verify")
def audit_verify(
    key: Annotated[
        list[Path] | None,
        typer.Option(
            help="Trusted checkpoint public key PEM; default: the instance's."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON.")
    ] = False,
    as_user: Annotated[str | None, typer.Option("--as")] = None,
) -> None:
    """Recompute the audit chain and its signed checkpoints.

    Exits 0 when intact; otherwise names the first bad entry and exits with
    the code of an invalid input (5).
    """
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.audit import instance_verifying_keys, verify_audit_chain
    from waggle.governance.crypto import load_verifying_key

    settings = load_settings()
    keys = (
        [load_verifying_key(_read(path)) for path in key]
        if key
        else instance_verifying_keys(settings)
    )
    with session_scope() as session:
        report = verify_audit_chain(session, resolve_actor(session, as_user), keys=keys)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    problem = report.problem
    if problem is not None:
        where = "" if problem.seq is None else f"entry {problem.seq}: "
        _refuse(InvalidInput(problem.message), [f"{where}{problem.message}"])
    if not as_json:
        typer.echo(
            f"intact: {report.entries} entries, {report.checkpoints} checkpoints, "
            f"{report.signatures_checked} signatures checked"
        )
        for note in report.notes:
            typer.echo(f"  note: {note}")


@audit_app.command("checkpoint")
def audit_checkpoint(
    as_user: Annotated[str | None, typer.Option("--as")] = None,
) -> None:
    """Sign a checkpoint over the entries since the last one."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.audit import sign_checkpoint

    settings = load_settings()
    with session_scope() as session:
        signed = sign_checkpoint(
            session, resolve_actor(session, as_user), settings=settings
        )
        if signed is None:
            typer.echo("nothing new to sign")
            return
        typer.echo(
            f"signed entries {signed.seq_from} to {signed.seq_to}: "
            f"root {signed.merkle_root} by {signed.key_fingerprint}"
        )


@export_app.command("request")
def export_request(
    resource: Annotated[str, typer.Argument(help="What to export, e.g. accounts.")],
    purpose: Annotated[str, typer.Option(help="Why the export is needed.")],
    as_user: AsUser = None,
) -> None:
    """Ask for a signed export; it waits for a compliance officer."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.export_requests import request_export

    with session_scope() as session:
        found = request_export(
            session, resolve_actor(session, as_user), resource=resource, purpose=purpose
        )
        typer.echo(f"export request {found.id}: {found.resource} pending")


@export_app.command("list")
def export_list(
    status: Annotated[
        str | None, typer.Option(help="pending, approved or rejected.")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """List export requests, newest first."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.export_requests import list_export_requests

    with session_scope() as session:
        found = list_export_requests(
            session, resolve_actor(session, as_user), status=status
        )
        for request in found:
            decided = f"  by {request.decided_by}" if request.decided_by else ""
            package = f"  {request.package_id}" if request.package_id else ""
            typer.echo(
                f"{request.id}  {request.status}  {request.resource}"
                f"  {request.requested_by}{decided}{package}  {request.purpose}"
            )


@export_app.command("approve")
def export_approve(request_id: int, as_user: AsUser = None) -> None:
    """Approve a pending request: build the package both of you sign."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.export_requests import approve_export_request

    settings = load_settings()
    with session_scope() as session:
        found = approve_export_request(
            session, resolve_actor(session, as_user), request_id, settings=settings
        )
        typer.echo(
            f"export request {found.id} approved: package {found.package_id},"
            f" {found.row_count} rows, audit entry {found.audit_seq}"
        )


@export_app.command("reject")
def export_reject(
    request_id: int,
    reason: Annotated[str, typer.Option(help="Why the export is refused.")],
    as_user: AsUser = None,
) -> None:
    """Reject a pending request with a reason."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.export_requests import reject_export_request

    with session_scope() as session:
        found = reject_export_request(
            session, resolve_actor(session, as_user), request_id, reason=reason
        )
        typer.echo(f"export request {found.id} rejected")


@export_app.command("download")
def export_download(
    request_id: int,
    out: Annotated[Path, typer.Option(help="Where to write the package .zip.")],
    as_user: AsUser = None,
) -> None:
    """Copy an approved request's signed package to ``--out`` (audited)."""
    import shutil

    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.export_requests import export_package_path

    if out.exists():
        raise InvalidInput(f"export download: {out} already exists")
    settings = load_settings()
    with session_scope() as session:
        path = export_package_path(
            session, resolve_actor(session, as_user), request_id, settings=settings
        )
        shutil.copyfile(path, out)
    typer.echo(f"wrote {out}  (check with: waggle verify {out})")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise NotFound(f"trusted key file {path} cannot be read") from exc


def _refuse(error: WaggleError, messages: list[str]) -> NoReturn:
    """Print one line per message and exit with the code of ``error``'s kind.

    Printed here rather than by ``waggle``'s handler, whose console wraps long
    lines at 80 columns: the reason must stay on one line.
    """
    for message in messages:
        typer.echo(f"invalid: {message}", err=True)
    # The exit-code table lives with the ``waggle`` command, always loaded here.
    from waggle.cli import exit_code_for

    raise typer.Exit(code=exit_code_for(error))
