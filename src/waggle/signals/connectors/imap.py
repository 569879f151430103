"""Pull e-mail from IMAP mailboxes: :class:`ImapSource`, a ``PullSource``.

The records it returns are whole RFC 5322 messages, parsed by the ``email``
connector (:attr:`ImapSource.connector`). How it reads:

- **Cursor.** A JSON object ``{mailbox: {"uidvalidity": N, "last_uid": M}}``.
  ``fetch`` returns the messages with a UID above ``last_uid``, mailbox by
  mailbox in the configured order and UID order within one, at most ``limit``
  in all; the cursor it returns covers exactly those (mailboxes it did not get
  to keep their old position).
- **UIDVALIDITY.** When the server reports another UIDVALIDITY than the
  cursor holds, the mailbox's UIDs mean other messages now, so it is read again
  from the start; the messages' source ids (their Message-IDs) make the
  re-read harmless.
- **Read-only.** Mailboxes are opened with EXAMINE and bodies fetched with
  ``BODY.PEEK[]``, so no ``\\Seen`` flag is ever set.
- **Login.** ASCII credentials use LOGIN; any other (a Chinese password, say)
  uses ``AUTHENTICATE PLAIN``, the only standard way to send UTF-8 ones.
- **Mailbox names** are Unicode in the configuration (``已发送``) and sent in
  IMAP's modified UTF-7 (RFC 3501, 5.1.3).
"""

from __future__ import annotations

import base64
import imaplib
import json
import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from waggle.core.errors import InvalidInput, UpstreamFailure
from waggle.signals.events import RawRecord

logger = logging.getLogger(__name__)

FETCH_BATCH = 50
FIRST_SEARCH_WINDOW = 1_000
MAX_SEARCH_WINDOW = 50_000
_UID = re.compile(rb"\bUID (\d+)")


class ImapConfig(BaseModel):
    """Where to read mail and as whom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str = Field(min_length=1)
    password: SecretStr
    mailboxes: tuple[str, ...] = ("INBOX",)
    use_ssl: bool = False
    starttls: bool = False
    timeout: float = Field(default=30.0, gt=0)
    name: str | None = None

    @field_validator("mailboxes")
    @classmethod
    def _check_mailboxes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not mailbox.strip() for mailbox in value):
            raise ValueError("expected a list of mailbox names, e.g. ['INBOX', 'Sent']")
        if len(set(value)) != len(value):
            raise ValueError("a mailbox is listed twice")
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> ImapConfig:
        if self.use_ssl and self.starttls:
            raise ValueError("use_ssl and starttls exclude each other; pick one")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.use_ssl else 143


class MailboxPosition(BaseModel):
    """How far one mailbox has been read."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    uidvalidity: int = Field(ge=0)
    last_uid: int = Field(ge=0)


_CURSOR = TypeAdapter(dict[str, MailboxPosition])


def parse_cursor(cursor: str | None) -> dict[str, MailboxPosition]:
    """Read a cursor ``fetch`` returned; ``None`` or ``""`` is the start.

    Raises:
        InvalidInput: the cursor is not the JSON object ``fetch`` writes.
    """
    if not cursor:
        return {}
    try:
        return _CURSOR.validate_json(cursor)
    except ValidationError as exc:
        raise InvalidInput(
            f"IMAP cursor {cursor[:200]!r}: expected JSON like "
            '{"INBOX": {"uidvalidity": 1, "last_uid": 0}}',
            field="cursor",
        ) from exc


def dump_cursor(positions: Mapping[str, MailboxPosition]) -> str:
    """Write ``positions`` as the cursor string, keys sorted."""
    return json.dumps(
        {mailbox: position.model_dump() for mailbox, position in positions.items()},
        sort_keys=True,
        ensure_ascii=False,
    )


def encode_mailbox_name(name: str) -> str:
    """Return ``name`` in IMAP's modified UTF-7, quoted for a command line."""
    encoded: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            text = base64.b64encode(data).decode("ascii").rstrip("=")
            encoded.append("&" + text.replace("/", ",") + "-")
            pending.clear()

    for character in name:
        if 0x20 <= ord(character) <= 0x7E:
            flush()
            encoded.append("&-" if character == "&" else character)
        else:
            pending.append(character)
    flush()
    quoted = "".join(encoded).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


class ImapSource:
    """Polls IMAP mailboxes for new messages, never marking them read.

    Raises:
        InvalidInput: the configuration is unusable.
    """

    connector = "email"

    def __init__(self, config: Mapping[str, Any]) -> None:
        try:
            self.config = ImapConfig.model_validate(dict(config))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "config"
            raise InvalidInput(
                f"IMAP source config: {where}: {error['msg']}", field=where
            ) from exc
        self.name = self.config.name or (
            f"imap://{self.config.username}@{self.config.host}:"
            f"{self.config.effective_port}"
        )

    def fetch(
        self, cursor: str | None, *, limit: int
    ) -> tuple[list[RawRecord], str | None]:
        """Return up to ``limit`` messages after ``cursor`` and the cursor after them.

        Raises:
            InvalidInput: ``limit`` is below 1 or the cursor is not one of ours.
            UpstreamFailure: the server is unreachable, refuses the login or a
                mailbox, or breaks the protocol.
        """
        if limit < 1:
            raise InvalidInput(f"IMAP fetch: limit must be at least 1, got {limit}")
        positions = parse_cursor(cursor)
        records: list[RawRecord] = []
        with self._session() as client:
            for mailbox in self.config.mailboxes:
                if len(records) >= limit:
                    break
                found, position = self._fetch_mailbox(
                    client, mailbox, positions.get(mailbox), limit=limit - len(records)
                )
                records.extend(found)
                positions[mailbox] = position
        logger.info(
            "imap fetch finished", extra={"source": self.name, "records": len(records)}
        )
        return records, dump_cursor(positions)

    @contextmanager
    def _session(self) -> Iterator[imaplib.IMAP4]:
        with self._upstream("connecting"):
            client = self._connect()
        try:
            with self._upstream("login"):
                self._login(client)
            with self._upstream("reading"):
                yield client
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def _connect(self) -> imaplib.IMAP4:
        config = self.config
        port = config.effective_port
        if config.use_ssl:
            return imaplib.IMAP4_SSL(
                config.host,
                port,
                ssl_context=ssl.create_default_context(),
                timeout=config.timeout,
            )
        client = imaplib.IMAP4(config.host, port, timeout=config.timeout)
        if config.starttls:
            client.starttls(ssl.create_default_context())
        return client

    def _login(self, client: imaplib.IMAP4) -> None:
        username = self.config.username
        password = self.config.password.get_secret_value()
        if username.isascii() and password.isascii():
            client.login(username, password)
            return
        credentials = f"\0{username}\0{password}".encode()
        client.authenticate("PLAIN", lambda _challenge: credentials)

    @contextmanager
    def _upstream(self, action: str) -> Iterator[None]:
        try:
            yield
        except (imaplib.IMAP4.error, OSError) as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise UpstreamFailure(
                f"IMAP {self.name}: {action} failed: {reason}", source=self.name
            ) from exc

    def _fetch_mailbox(
        self,
        client: imaplib.IMAP4,
        mailbox: str,
        position: MailboxPosition | None,
        *,
        limit: int,
    ) -> tuple[list[RawRecord], MailboxPosition]:
        uidvalidity, uidnext = self._examine(client, mailbox)
        last_uid = 0
        if position is not None and position.uidvalidity == uidvalidity:
            last_uid = position.last_uid
        elif position is not None:
            logger.warning(
                "imap mailbox restarted",
                extra={
                    "source": self.name,
                    "mailbox": mailbox,
                    "reason": "uidvalidity",
                },
            )
        uids = _search_after(client, last_uid, uidnext=uidnext, limit=limit)
        bodies = self._fetch_bodies(client, uids)
        records = [
            RawRecord(bodies[uid], locator=self._locator(mailbox, uid))
            for uid in uids
            if uid in bodies
        ]
        last_uid = max([last_uid, *bodies])
        return records, MailboxPosition(uidvalidity=uidvalidity, last_uid=last_uid)

    def _examine(self, client: imaplib.IMAP4, mailbox: str) -> tuple[int, int | None]:
        status, data = client.select(encode_mailbox_name(mailbox), readonly=True)
        if status != "OK":
            raise UpstreamFailure(
                f"IMAP {self.name}: mailbox {mailbox!r} cannot be opened: "
                f"{_text(data)}",
                source=self.name,
                mailbox=mailbox,
            )
        uidvalidity = _number(client.response("UIDVALIDITY")[1])
        if uidvalidity is None:
            raise UpstreamFailure(
                f"IMAP {self.name}: mailbox {mailbox!r} reported no UIDVALIDITY",
                source=self.name,
                mailbox=mailbox,
            )
        return uidvalidity, _number(client.response("UIDNEXT")[1])

    def _fetch_bodies(self, client: imaplib.IMAP4, uids: list[int]) -> dict[int, bytes]:
        bodies: dict[int, bytes] = {}
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            status, data = client.uid(
                "FETCH", ",".join(str(uid) for uid in batch), "(UID BODY.PEEK[])"
            )
            if status != "OK":
                raise UpstreamFailure(
                    f"IMAP {self.name}: FETCH failed: {_text(data)}", source=self.name
                )
            wanted = set(batch)
            bodies.update(
                (uid, body) for uid, body in _fetched_bodies(data) if uid in wanted
            )
        return bodies

    def _locator(self, mailbox: str, uid: int) -> str:
        return f"imap://{self.config.username}@{self.config.host}/{mailbox} uid {uid}"


def _search_after(
    client: imaplib.IMAP4, last_uid: int, *, uidnext: int | None, limit: int
) -> list[int]:
    """Return up to ``limit`` UIDs above ``last_uid``, ascending.

    With UIDNEXT known the search walks growing UID windows, so that a huge
    mailbox never answers with one line longer than imaplib accepts.
    """
    if uidnext is None:
        return sorted(
            uid for uid in _uid_search(client, f"{last_uid + 1}:*") if uid > last_uid
        )[:limit]
    found: list[int] = []
    start, window = last_uid + 1, FIRST_SEARCH_WINDOW
    while start < uidnext and len(found) < limit:
        end = min(start + window - 1, uidnext - 1)
        found.extend(
            sorted(uid for uid in _uid_search(client, f"{start}:{end}") if uid >= start)
        )
        start, window = end + 1, min(window * 2, MAX_SEARCH_WINDOW)
    return found[:limit]


def _uid_search(client: imaplib.IMAP4, uid_set: str) -> list[int]:
    status, data = client.uid("SEARCH", "UID", uid_set)
    if status != "OK":
        raise imaplib.IMAP4.error(f"UID SEARCH {uid_set}: {_text(data)}")
    return [int(token) for line in data if line for token in bytes(line).split()]


def _fetched_bodies(data: list[Any]) -> Iterator[tuple[int, bytes]]:
    """Pair each literal in a FETCH answer with its UID.

    The UID may come before the literal (``1 (UID 5 BODY[] {n}``) or after it
    (in the closing ``UID 5)``); untagged answers without a body (flag
    updates) are skipped.
    """
    for index, item in enumerate(data):
        if not isinstance(item, tuple) or len(item) != 2:
            continue
        head, body = item
        match = _UID.search(bytes(head))
        if (
            match is None
            and index + 1 < len(data)
            and isinstance(data[index + 1], bytes)
        ):
            match = _UID.search(data[index + 1])
        if match is not None and isinstance(body, bytes):
            yield int(match[1]), body


def _number(values: list[Any]) -> int | None:
    for value in values:
        if value is not None and bytes(value).strip().isdigit():
            return int(value)
    return None


def _text(data: list[Any]) -> str:
    return " ".join(
        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        for item in data
    )


__all__ = [
    "ImapConfig",
    "ImapSource",
    "MailboxPosition",
    "dump_cursor",
    "encode_mailbox_name",
    "parse_cursor",
]
