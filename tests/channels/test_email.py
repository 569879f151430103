"""E-mail over SMTP against a local SMTP responder that records each envelope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels.fakes import FakeSmtp
from waggle.channels import (
    ChannelSettingsInvalid,
    Message,
    PlatformRejected,
    PlatformUnavailable,
)
from waggle.channels.email import EmailChannel
from waggle.channels.service import build_channel
from waggle.core.clock import FixedClock


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp(username="notifier", password="s3cret-pw").running() as fake:
        yield fake


def mailer(fake: FakeSmtp, **values: object) -> EmailChannel:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": fake.port,
        "use_starttls": False,
        "username": "notifier",
        "password": "s3cret-pw",
        "from_address": "waggle@sales.example.cn",
        "from_name": "Waggle 销售助手",
        "timeout_seconds": 2,
    }
    settings.update(values)
    channel = build_channel("email", settings)
    assert isinstance(channel, EmailChannel)
    return channel


def note(**values: object) -> Message:
    fields: dict[str, object] = {
        "title": "商机阶段变更：华东电力扩容项目",
        "body": "商机已进入「商务谈判」阶段。\n\n请在周五前提交报价。",
        "address": "zhang.san@sales.example.cn",
        "link_url": "https://waggle.example/o/42?tab=stage&x=<1>",
    }
    fields.update(values)
    return Message(**fields)  # type: ignore[arg-type]


def test_chinese_subject_and_bodies_arrive_intact(smtp, fixed_clock: FixedClock):
    """The fake decodes the same Chinese subject, text and HTML that were sent."""
    channel = mailer(smtp)

    receipt = channel.send(note())

    (envelope,) = smtp.envelopes
    message = envelope.message
    assert envelope.mail_from == "waggle@sales.example.cn"
    assert envelope.rcpt_tos == ["zhang.san@sales.example.cn"]
    assert message["Subject"] == "商机阶段变更：华东电力扩容项目"
    assert message["From"] == "Waggle 销售助手 <waggle@sales.example.cn>"
    assert message["Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content() == (
        "商机阶段变更：华东电力扩容项目\n"
        "商机已进入「商务谈判」阶段。\n\n请在周五前提交报价。\n"
        "查看详情: https://waggle.example/o/42?tab=stage&x=<1>\n"
    )
    assert "<p>请在周五前提交报价。</p>" in html.get_content()
    assert (
        '<a href="https://waggle.example/o/42?tab=stage&amp;x=&lt;1&gt;">查看详情</a>'
        in html.get_content()
    )
    assert receipt.platform_message_id == message["Message-ID"]


def test_subject_travels_as_rfc2047_encoded_words(smtp):
    """On the wire the subject is ASCII: UTF-8 encoded words, no raw Chinese."""
    channel = mailer(smtp)

    channel.send(note())

    raw = smtp.envelopes[0].raw_header("Subject")
    assert raw.startswith("=?utf-8?")
    assert raw.isascii()


def test_login_uses_auth_plain_before_mail(smtp):
    """With a username the session authenticates before MAIL FROM."""
    channel = mailer(smtp)

    channel.send(note())

    assert smtp.commands == ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]


def test_refused_recipient_is_a_permanent_error_with_the_smtp_code(smtp):
    """A 550 on RCPT TO is permanent, code 550 in details."""
    smtp.rejected.add("nobody@sales.example.cn")
    channel = mailer(smtp)

    with pytest.raises(PlatformRejected) as caught:
        channel.send(note(address="nobody@sales.example.cn"))

    assert caught.value.details["platform_code"] == "550"
    assert smtp.envelopes == []


def test_wrong_password_is_a_permanent_error(smtp):
    """A 535 to AUTH is permanent: retrying cannot fix the password."""
    channel = mailer(smtp, password="wrong")

    with pytest.raises(PlatformRejected) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "535"


def test_temporary_data_failure_is_transient(smtp):
    """A 451 after DATA is a retryable failure."""
    smtp.transient_data_failures = 1
    channel = mailer(smtp)

    with pytest.raises(PlatformUnavailable) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "451"


def test_starttls_flag_issues_starttls(smtp):
    """With use_starttls the client asks for STARTTLS; the fake's 454 is transient."""
    channel = mailer(smtp, use_starttls=True)

    with pytest.raises(PlatformUnavailable) as caught:
        channel.send(note())

    assert smtp.commands[:2] == ["EHLO", "STARTTLS"]
    assert caught.value.details["platform_code"] == "454"


def test_non_ascii_password_is_refused_when_the_settings_are_read():
    """smtplib sends credentials as ASCII, so a Chinese password is refused up front."""
    settings = {"host": "mail", "from_address": "a@b.cn", "username": "u"}

    with pytest.raises(ChannelSettingsInvalid) as caught:
        build_channel("email", {**settings, "password": "密码"})

    assert caught.value.message == (
        "channel email settings.password: expected ASCII characters only"
    )


def test_unreachable_relay_is_transient():
    """A refused connection is a retryable failure."""
    with FakeSmtp().running() as fake:
        port = fake.port
    channel = build_channel(
        "email",
        {
            "host": "127.0.0.1",
            "port": port,
            "use_starttls": False,
            "from_address": "waggle@sales.example.cn",
        },
    )

    with pytest.raises(PlatformUnavailable) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "network"
