"""A throwaway Dovecot IMAP server on loopback, for tests that need a real one.

:func:`start_dovecot` writes a self-contained configuration into a scratch
folder (its own ``base_dir``, state, logs, a passwd-file with one user and
Maildir storage), starts ``dovecot -F`` in the foreground as a child process
and waits until the IMAP port accepts connections. Every Dovecot process runs
as the user running the tests, so it works as root in a container and as an
ordinary user alike; nothing outside the scratch folder is touched.

The configuration targets Dovecot 2.3 (Debian 12's ``dovecot-imapd``); 2.4
renamed several settings, so the version is checked up front and an
unsupported one fails with a clear message instead of a config error.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DOVECOT = Path("/usr/sbin/dovecot")
INSTALL_HINT = (
    "Dovecot is needed for the IMAP tests: run `make system-packages` "
    "(scripts/ensure-system-packages.sh installs Debian's dovecot-imapd)"
)
STARTUP_SECONDS = 15.0
OTHER_USERS = {"zhang": "密码-s3cret"}


class DovecotUnavailable(RuntimeError):
    """Dovecot is missing, of an unsupported version, or failed to start."""


@dataclass(frozen=True)
class DovecotServer:
    """Where the running test server listens and whom it lets in."""

    host: str
    port: int
    username: str
    password: str
    log_path: Path
    other_users: dict[str, str]


def dovecot_version() -> tuple[int, int]:
    """Return the installed Dovecot's (major, minor) version.

    Raises:
        DovecotUnavailable: the binary is missing or prints no version.
    """
    if not DOVECOT.exists():
        raise DovecotUnavailable(f"{DOVECOT} not found. {INSTALL_HINT}")
    output = subprocess.run(
        [str(DOVECOT), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.match(r"(\d+)\.(\d+)", output)
    if match is None:
        raise DovecotUnavailable(f"cannot read the Dovecot version from {output!r}")
    return int(match[1]), int(match[2])


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(root: Path, *, port: int, users: dict[str, str]) -> Path:
    """Write a Dovecot 2.3 configuration with Maildir ``users`` under ``root``."""
    for folder in ("base", "state", "home"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "users").write_text(
        "".join(
            f"{name}:{{PLAIN}}{password}::::{root / 'home' / name}::\n"
            for name, password in users.items()
        ),
        encoding="utf-8",
    )
    internal, login = _service_users()
    mail_uid, mail_gid = _mail_ids(internal)
    root.chmod(0o755)
    os.chown(root / "home", mail_uid, mail_gid)
    config = root / "dovecot.conf"
    config.write_text(
        _CONFIG.format(
            root=root,
            port=port,
            internal=internal,
            login=login,
            uid=mail_uid,
            gid=mail_gid,
            auth_user=pwd.getpwuid(os.getuid()).pw_name,
        ),
        encoding="utf-8",
    )
    return config


def _mail_ids(internal: str) -> tuple[int, int]:
    """Return the uid and gid mail is stored as: never root, which Dovecot forbids."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    account = pwd.getpwnam(internal)
    return account.pw_uid, account.pw_gid


def _service_users() -> tuple[str, str]:
    """Return the (internal, login) users: Dovecot's own ones when run as root.

    Dovecot refuses to run its login processes as root, so a root test run uses
    the ``dovecot`` and ``dovenull`` accounts the Debian package creates; an
    ordinary user runs every process as itself.
    """
    if os.getuid() != 0:
        return pwd.getpwuid(os.getuid()).pw_name, pwd.getpwuid(os.getuid()).pw_name
    for name in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(name)
        except KeyError as exc:
            raise DovecotUnavailable(f"user {name!r} missing. {INSTALL_HINT}") from exc
    return "dovecot", "dovenull"


@contextmanager
def start_dovecot(
    root: Path, *, username: str = "rep", password: str = "s3cret-pass"
) -> Iterator[DovecotServer]:
    """Run a Dovecot IMAP server on 127.0.0.1 for the duration of the block.

    Besides ``username`` the server knows :data:`OTHER_USERS`, whose non-ASCII
    password can only be sent with ``AUTHENTICATE PLAIN``.

    Raises:
        DovecotUnavailable: Dovecot is missing, unsupported or did not start.
    """
    major, minor = dovecot_version()
    if (major, minor) != (2, 3):
        raise DovecotUnavailable(
            f"Dovecot {major}.{minor} found; tests/signals/dovecot.py writes a "
            "2.3 configuration"
        )
    port = free_port()
    users = {username: password, **OTHER_USERS}
    config = write_config(root, port=port, users=users)
    stderr_path = root / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        _wait_for_port(process, port=port, root=root)
        yield DovecotServer(
            "127.0.0.1",
            port,
            username,
            password,
            root / "dovecot.log",
            dict(OTHER_USERS),
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_for_port(process: subprocess.Popen[bytes], *, port: int, root: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DovecotUnavailable(
                f"dovecot exited with status {process.returncode}: {_logs(root)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.terminate()
    raise DovecotUnavailable(f"dovecot did not listen on port {port}: {_logs(root)}")


def _logs(root: Path) -> str:
    texts = []
    for name in ("stderr.log", "dovecot.log"):
        path = root / name
        if path.exists():
            texts.append(path.read_text(encoding="utf-8", errors="replace")[-2000:])
    return " | ".join(texts) or "no log written"


# Dovecot 2.3 settings. Mail is stored as the ``dovecot`` account when the tests
# run as root (Dovecot refuses mail access as root), so the scratch folder must
# be traversable by it; the auth service runs as the test user so that it can
# read the passwd-file.
_CONFIG = """\
instance_name = waggle-test-{port}
base_dir = {root}/base
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# No pause after a failed login, and no growing penalty for the next ones from
# 127.0.0.1 (the anvil socket with mode 0 is Dovecot's documented switch): the
# tests log in wrongly on purpose and must stay fast.
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = 0
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  user = {auth_user}
}}
"""
