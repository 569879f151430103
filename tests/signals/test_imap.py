"""ImapSource against a real Dovecot on loopback: cursors, limits, flags, failures.

The server (``dovecot`` fixture) lives for the whole run, so every test reads
its own mailboxes, named after the test; messages arrive by IMAP APPEND as a
mail client would put them there.
"""

from __future__ import annotations

import imaplib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.signals import dovecot as dovecot_helper
from tests.signals.dovecot import DovecotServer, DovecotUnavailable, free_port
from waggle.core.errors import InvalidInput, UpstreamFailure
from waggle.signals.connectors import imap as imap_module
from waggle.signals.connectors.email import EmailConnector
from waggle.signals.connectors.imap import (
    ImapSource,
    encode_mailbox_name,
    parse_cursor,
)

FIXTURES = Path(__file__).parent / "fixtures" / "email"


def message(number: int, *, subject: str = "hello") -> bytes:
    return (
        f"From: buyer{number}@client.com\r\nTo: li.lei@acme.cn\r\n"
        f"Subject: {subject} {number}\r\nDate: Mon, 4 Mar 2024 09:00:00 +0800\r\n"
        f"Message-ID: <m{number}@client.com>\r\n\r\nbody {number}\r\n"
    ).encode()


@contextmanager
def client(
    server: DovecotServer, *, username: str | None = None, password: str | None = None
) -> Iterator[imaplib.IMAP4]:
    connection = imaplib.IMAP4(server.host, server.port, timeout=5)
    connection.login(username or server.username, password or server.password)
    try:
        yield connection
    finally:
        connection.logout()


def create(server: DovecotServer, mailbox: str) -> None:
    with client(server) as connection:
        status, data = connection.create(encode_mailbox_name(mailbox))
        assert status == "OK", data


def append(
    server: DovecotServer, mailbox: str, *payloads: bytes, flags: str = ""
) -> None:
    with client(server) as connection:
        for payload in payloads:
            status, data = connection.append(
                encode_mailbox_name(mailbox), flags or None, None, payload
            )
            assert status == "OK", data


def uidvalidity(server: DovecotServer, mailbox: str) -> int:
    with client(server) as connection:
        status, data = connection.status(encode_mailbox_name(mailbox), "(UIDVALIDITY)")
        assert status == "OK", data
        return int(data[0].split(b"UIDVALIDITY ")[1].rstrip(b")"))


def flags(server: DovecotServer, mailbox: str) -> list[bytes]:
    with client(server) as connection:
        connection.select(encode_mailbox_name(mailbox), readonly=True)
        status, data = connection.uid("FETCH", "1:*", "(FLAGS)")
        assert status == "OK", data
        return sorted(item for item in data if isinstance(item, bytes))


def source(server: DovecotServer, *mailboxes: str, **overrides: object) -> ImapSource:
    config: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "password": server.password,
        "timeout": 5,
    }
    if mailboxes:
        config["mailboxes"] = list(mailboxes)
    return ImapSource({**config, **overrides})


def crlf(payload: bytes) -> bytes:
    """Return ``payload`` with CRLF line ends, as imaplib's APPEND stores it."""
    return payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_fetch_returns_every_message_in_uid_order(dovecot):
    """A first fetch returns all messages verbatim, UID-ordered, with locators."""
    create(dovecot, "all")
    append(dovecot, "all", message(1), message(2), message(3))

    records, cursor = source(dovecot, "all").fetch(None, limit=10)

    assert [record.payload for record in records] == [
        message(1),
        message(2),
        message(3),
    ]
    assert [record.locator for record in records] == [
        "imap://rep@127.0.0.1/all uid 1",
        "imap://rep@127.0.0.1/all uid 2",
        "imap://rep@127.0.0.1/all uid 3",
    ]
    assert json.loads(cursor or "") == {
        "all": {"uidvalidity": uidvalidity(dovecot, "all"), "last_uid": 3}
    }


def test_limit_caps_each_fetch_and_the_cursor_advances_only_that_far(dovecot):
    """With limit 2, five messages come as 2, 2, 1 and then nothing."""
    create(dovecot, "paged")
    append(dovecot, "paged", *(message(number) for number in range(1, 6)))
    imap = source(dovecot, "paged")

    first, cursor_1 = imap.fetch(None, limit=2)
    second, cursor_2 = imap.fetch(cursor_1, limit=2)
    third, cursor_3 = imap.fetch(cursor_2, limit=2)
    fourth, cursor_4 = imap.fetch(cursor_3, limit=2)

    assert [len(batch) for batch in (first, second, third, fourth)] == [2, 2, 1, 0]
    assert [
        parse_cursor(cursor)["paged"].last_uid
        for cursor in (cursor_1, cursor_2, cursor_3, cursor_4)
    ] == [2, 4, 5, 5]
    assert third[0].payload == message(5)


def test_search_in_small_uid_windows_finds_the_same_messages(dovecot, monkeypatch):
    """Walking UIDs in windows of 1 then 2 returns what one search would."""
    monkeypatch.setattr(imap_module, "FIRST_SEARCH_WINDOW", 1)
    monkeypatch.setattr(imap_module, "MAX_SEARCH_WINDOW", 2)
    create(dovecot, "windows")
    append(dovecot, "windows", *(message(number) for number in range(1, 6)))

    records, cursor = source(dovecot, "windows").fetch(None, limit=4)

    assert [record.payload for record in records] == [
        message(number) for number in range(1, 5)
    ]
    assert parse_cursor(cursor)["windows"].last_uid == 4


def test_fetch_after_a_new_append_returns_only_the_new_message(dovecot):
    """An incremental fetch from the stored cursor sees just what arrived since."""
    create(dovecot, "incremental")
    append(dovecot, "incremental", message(1), message(2))
    imap = source(dovecot, "incremental")
    _, cursor = imap.fetch(None, limit=10)

    append(dovecot, "incremental", message(3))
    records, next_cursor = imap.fetch(cursor, limit=10)

    assert [record.payload for record in records] == [message(3)]
    assert parse_cursor(next_cursor)["incremental"].last_uid == 3


def test_several_mailboxes_are_read_in_order_within_one_limit(dovecot):
    """Mailboxes are read in configured order; the limit spans them all."""
    for mailbox in ("multi-in", "multi-sent", "已发送"):
        create(dovecot, mailbox)
    append(dovecot, "multi-in", message(1), message(2))
    append(dovecot, "multi-sent", message(3), message(4))
    append(dovecot, "已发送", message(5))
    imap = source(dovecot, "multi-in", "multi-sent", "已发送")

    records, cursor = imap.fetch(None, limit=3)
    rest, _ = imap.fetch(cursor, limit=10)

    assert [record.locator for record in records] == [
        "imap://rep@127.0.0.1/multi-in uid 1",
        "imap://rep@127.0.0.1/multi-in uid 2",
        "imap://rep@127.0.0.1/multi-sent uid 1",
    ]
    assert {
        name: position.last_uid for name, position in parse_cursor(cursor).items()
    } == {
        "multi-in": 2,
        "multi-sent": 1,
    }
    assert [record.locator for record in rest] == [
        "imap://rep@127.0.0.1/multi-sent uid 2",
        "imap://rep@127.0.0.1/已发送 uid 1",
    ]


def test_fetch_never_sets_the_seen_flag(dovecot):
    """Fetched messages keep their flags: unread stays unread, read stays read."""
    create(dovecot, "flags")
    append(dovecot, "flags", message(1))
    append(dovecot, "flags", message(2), flags=r"(\Seen)")
    before = flags(dovecot, "flags")

    records, _ = source(dovecot, "flags").fetch(None, limit=10)

    assert len(records) == 2
    assert flags(dovecot, "flags") == before
    assert [b"\\Seen" in line for line in before] == [False, True]


def test_changed_uidvalidity_restarts_the_mailbox(dovecot):
    """A mailbox deleted and re-created is read again from its first message."""
    create(dovecot, "recreated")
    append(dovecot, "recreated", message(1), message(2), message(3))
    imap = source(dovecot, "recreated")
    _, cursor = imap.fetch(None, limit=10)
    old_validity = parse_cursor(cursor)["recreated"].uidvalidity

    with client(dovecot) as connection:
        assert connection.delete(encode_mailbox_name("recreated"))[0] == "OK"
    create(dovecot, "recreated")
    append(dovecot, "recreated", message(4), message(5))
    records, next_cursor = imap.fetch(cursor, limit=10)

    new_position = parse_cursor(next_cursor)["recreated"]
    assert [record.payload for record in records] == [message(4), message(5)]
    assert new_position.last_uid == 2
    assert new_position.uidvalidity == uidvalidity(dovecot, "recreated")
    assert new_position.uidvalidity != old_validity


def test_default_mailbox_is_inbox_and_utf8_passwords_log_in(dovecot):
    """Without mailboxes INBOX is read; a Chinese password uses AUTHENTICATE PLAIN."""
    [(username, password)] = dovecot.other_users.items()
    imap = ImapSource(
        {
            "host": dovecot.host,
            "port": dovecot.port,
            "username": username,
            "password": password,
        }
    )
    payload = (FIXTURES / "sent_gbk.eml").read_bytes()
    appender = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=5)
    appender.authenticate("PLAIN", lambda _: f"\0{username}\0{password}".encode())
    appender.append("INBOX", None, None, payload)
    appender.logout()

    records, cursor = imap.fetch(None, limit=10)

    assert [record.locator for record in records] == [
        "imap://zhang@127.0.0.1/INBOX uid 1"
    ]
    assert records[0].payload == crlf(payload)
    assert list(parse_cursor(cursor)) == ["INBOX"]


def test_fetched_chinese_messages_parse_into_drafts(dovecot):
    """GBK and UTF-8 messages read over IMAP parse like the files they came from."""
    create(dovecot, "chinese")
    append(
        dovecot,
        "chinese",
        (FIXTURES / "sent_gbk.eml").read_bytes(),
        (FIXTURES / "foxmail_reply.eml").read_bytes(),
    )
    connector = EmailConnector({"internal_domains": ["acme.cn"]})

    records, _ = source(dovecot, "chinese").fetch(None, limit=10)

    drafts = [connector.parse(record)[0] for record in records]
    assert [draft.attributes["subject"] for draft in drafts] == [
        "回复: 询价 - 朱镕基路项目报价",
        "回复：合同",
    ]
    assert drafts[1].text == "好的，合同我们下周签。"


def test_wrong_password_raises_upstream_failure_without_the_password(dovecot):
    """A refused login is an UpstreamFailure that names the step, not the secret."""
    imap = source(dovecot, "INBOX", password="not-the-password")

    with pytest.raises(UpstreamFailure, match="login failed") as caught:
        imap.fetch(None, limit=1)

    assert "AUTHENTICATIONFAILED" in caught.value.message
    assert "not-the-password" not in caught.value.message
    assert isinstance(caught.value.__cause__, imaplib.IMAP4.error)


def test_unreachable_server_raises_upstream_failure():
    """A closed port is an UpstreamFailure raised from the socket error."""
    port = free_port()
    imap = ImapSource(
        {"host": "127.0.0.1", "port": port, "username": "rep", "password": "x"}
    )

    with pytest.raises(UpstreamFailure, match="connecting failed") as caught:
        imap.fetch(None, limit=1)

    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert imap.name == f"imap://rep@127.0.0.1:{port}"


def test_missing_mailbox_raises_upstream_failure(dovecot):
    """A configured mailbox the server does not have is an UpstreamFailure."""
    imap = source(dovecot, "no-such-folder")

    with pytest.raises(UpstreamFailure, match="mailbox 'no-such-folder' cannot be"):
        imap.fetch(None, limit=1)


@pytest.mark.parametrize(
    "cursor",
    ["not json", '{"INBOX": 3}', '{"INBOX": {"uidvalidity": 1}}', "[1, 2]"],
)
def test_foreign_cursor_raises_invalid_input(cursor):
    """A cursor not written by fetch is refused before connecting."""
    imap = ImapSource({"host": "127.0.0.1", "username": "rep", "password": "x"})

    with pytest.raises(InvalidInput, match="IMAP cursor"):
        imap.fetch(cursor, limit=1)


def test_limit_below_one_raises_invalid_input():
    """A fetch must ask for at least one record."""
    imap = ImapSource({"host": "127.0.0.1", "username": "rep", "password": "x"})

    with pytest.raises(InvalidInput, match="limit must be at least 1"):
        imap.fetch(None, limit=0)


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"username": "rep", "password": "x"}, "host"),
        ({"host": "h", "username": "rep"}, "password"),
        ({"host": "h", "username": "rep", "password": "x", "port": 0}, "port"),
        (
            {"host": "h", "username": "rep", "password": "x", "mailboxes": []},
            "mailboxes",
        ),
        (
            {"host": "h", "username": "rep", "password": "x", "mailboxes": ["A", "A"]},
            "mailboxes",
        ),
        (
            {
                "host": "h",
                "username": "r",
                "password": "x",
                "use_ssl": True,
                "starttls": True,
            },
            "config",
        ),
    ],
)
def test_bad_config_raises_invalid_input(config, where):
    """Missing fields, bad ports, empty or doubled mailboxes and two TLS modes fail."""
    with pytest.raises(InvalidInput, match=f"IMAP source config: {where}"):
        ImapSource(config)


def test_default_ports_follow_the_tls_mode():
    """Plain and STARTTLS default to 143, implicit TLS to 993."""
    base = {"host": "mail.acme.cn", "username": "rep", "password": "x"}

    names = [ImapSource(base).name, ImapSource({**base, "use_ssl": True}).name]

    assert names == ["imap://rep@mail.acme.cn:143", "imap://rep@mail.acme.cn:993"]


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", '"INBOX"'),
        ("已发送", '"&XfJT0ZAB-"'),
        ("R&D", '"R&-D"'),
        ('Say "hi"', '"Say \\"hi\\""'),
        ("Sent/客户A", '"Sent/&W6JiNw-A"'),
    ],
)
def test_mailbox_names_are_sent_in_modified_utf7(name, encoded):
    """Non-ASCII names use RFC 3501 modified UTF-7; & and quotes are escaped."""
    assert encode_mailbox_name(name) == encoded


def test_missing_dovecot_fails_with_the_install_hint(monkeypatch, tmp_path):
    """Without the binary the helper fails, pointing at make system-packages."""
    monkeypatch.setattr(dovecot_helper, "DOVECOT", tmp_path / "no-dovecot")

    with pytest.raises(DovecotUnavailable, match="run `make system-packages`"):
        dovecot_helper.dovecot_version()
