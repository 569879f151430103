"""The e-mail connector: RFC 5322 messages from .eml and .mbox files to drafts."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.core.errors import InvalidInput
from waggle.signals.connectors import build_connector
from waggle.signals.connectors import read_records as registry_read_records
from waggle.signals.connectors.email import (
    EmailConnector,
    decode_bytes,
    normalise_message_id,
    read_records,
    strip_quoted_text,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

FIXTURES = Path(__file__).parent / "fixtures" / "email"


def connector() -> EmailConnector:
    return EmailConnector({"internal_domains": ["acme.cn"]})


def parse_fixture(name: str) -> EventDraft:
    [record] = read_records(FIXTURES / name)
    [draft] = connector().parse(record)
    return draft


def parse_bytes(payload: bytes) -> EventDraft:
    [draft] = connector().parse(RawRecord(payload, locator="test.eml"))
    return draft


def test_message_from_an_internal_domain_is_an_email_sent_event():
    """A message whose From is in an internal domain becomes email_sent."""
    draft = parse_fixture("sent_gbk.eml")

    assert draft.event_type is EventType.EMAIL_SENT
    assert draft.source == "email"
    assert draft.channel is Channel.EMAIL
    assert draft.source_id == "quote-2@mail.acme.cn"
    assert draft.sender == "email:li.lei@acme.cn"
    assert draft.recipients == ("email:buyer@client.com",)
    assert draft.occurred_at == dt.datetime(2024, 3, 4, 10, 0, tzinfo=dt.UTC)
    assert draft.attributes["from_name"] == "李雷"


def test_message_from_a_customer_is_an_email_received_event():
    """A message from outside is email_received, To+Cc deduplicated in order."""
    draft = parse_fixture("received_en.eml")

    assert draft.event_type is EventType.EMAIL_RECEIVED
    assert draft.sender == "email:buyer@client.com"
    assert draft.recipients == (
        "email:li.lei@acme.cn",
        "email:zhao@acme.cn",
        "email:buyer@client.com",
    )
    assert draft.attributes["cc"] == ["zhao@acme.cn", "buyer@client.com"]
    assert draft.occurred_at == dt.datetime(2024, 3, 5, 2, 15, tzinfo=dt.UTC)
    assert draft.attributes["date_source"] == "date"


def test_subdomain_of_an_internal_domain_counts_as_internal():
    """From mail.acme.cn is internal when acme.cn is; acme.cn.evil.com is not."""
    inside = b"From: a@mail.acme.cn\nDate: Mon, 4 Mar 2024 09:00:00 +0800\n\nhi\n"
    outside = b"From: a@acme.cn.evil.com\nDate: Mon, 4 Mar 2024 09:00:00 +0800\n\nhi\n"

    events = (parse_bytes(inside).event_type, parse_bytes(outside).event_type)

    assert events == (EventType.EMAIL_SENT, EventType.EMAIL_RECEIVED)


def test_bcc_recipients_are_included_after_to_and_cc():
    """Bcc (present in a sender's copy) adds recipients after To and Cc."""
    payload = (
        b"From: li.lei@acme.cn\nTo: A <a@x.cn>, b@x.cn\nCc: B@X.cn, c@x.cn\n"
        b"Bcc: boss@acme.cn\nDate: Mon, 4 Mar 2024 09:00:00 +0800\n\nhi\n"
    )

    draft = parse_bytes(payload)

    assert draft.recipients == (
        "email:a@x.cn",
        "email:b@x.cn",
        "email:c@x.cn",
        "email:boss@acme.cn",
    )


def test_messages_of_one_thread_share_the_thread_ref():
    """Root, reply and reply-to-reply all carry the root Message-ID as thread_ref."""
    records = list(read_records(FIXTURES / "thread.mbox"))

    drafts = [connector().parse(record)[0] for record in records]

    assert [draft.thread_ref for draft in drafts] == [
        "email_thread:root-1@mail.acme.cn"
    ] * 3
    assert [draft.attributes["is_reply"] for draft in drafts] == [False, True, True]
    assert drafts[2].attributes["references"] == [
        "root-1@mail.acme.cn",
        "reply-2@mail.client.com",
    ]


def test_reply_with_only_in_reply_to_threads_on_its_parent():
    """Without References, In-Reply-To names the thread."""
    payload = (
        b"From: a@x.cn\nDate: Mon, 4 Mar 2024 09:00:00 +0800\n"
        b"Message-ID: <child@x.cn>\nIn-Reply-To: <Parent@X.CN>\n\nhi\n"
    )

    draft = parse_bytes(payload)

    assert draft.thread_ref == "email_thread:Parent@x.cn"
    assert draft.attributes["in_reply_to"] == "Parent@x.cn"


def test_rfc2047_gbk_subject_and_display_names_decode():
    """Encoded words in GBK, gb2312 and gb18030 decode to the Chinese text."""
    sent = parse_fixture("sent_gbk.eml")
    foxmail = parse_fixture("foxmail_reply.eml")

    assert sent.attributes["subject"] == "回复: 询价 - 朱镕基路项目报价"
    assert foxmail.attributes["subject"] == "回复：合同"
    assert foxmail.attributes["from_name"] == "周总"


def test_raw_8bit_gbk_subject_decodes():
    """A subject written as raw GBK bytes, not encoded words, still decodes."""
    payload = (
        b"From: a@x.cn\nDate: Mon, 4 Mar 2024 09:00:00 +0800\nSubject: "
        + "关于报价的问题".encode("gbk")
        + b"\n\nhi\n"
    )

    draft = parse_bytes(payload)

    assert draft.attributes["subject"] == "关于报价的问题"


def test_gb2312_labelled_body_with_a_gbk_only_character_decodes():
    """A body labelled gb2312 holding 镕 (GBK only) decodes as gb18030."""
    draft = parse_fixture("sent_gbk.eml")

    assert draft.text is not None
    assert "附件是朱镕基路项目的正式报价，请查收。" in draft.text
    assert draft.attributes["body_charset"] == "gb18030"


def test_undeclared_gbk_body_is_detected():
    """An 8-bit body without a charset is recognised as GBK Chinese."""
    draft = parse_fixture("no_message_id.eml")

    assert draft.text == "您好，我们想了解一下价格。"
    assert draft.attributes["body_charset"] == "gb18030"


def test_wrong_charset_label_does_not_crash():
    """A body labelled UTF-8 but written in GBK is decoded by detection."""
    payload = (
        b"From: a@x.cn\nDate: Mon, 4 Mar 2024 09:00:00 +0800\n"
        b"Content-Type: text/plain; charset=utf-8\n\n"
        + "合同已经盖章寄出".encode("gbk")
    )

    draft = parse_bytes(payload)

    assert draft.text == "合同已经盖章寄出"


def test_unknown_charset_label_falls_back_to_detection():
    """An unknown charset name does not stop the body from decoding."""
    text, codec = decode_bytes("试用申请".encode(), "x-no-such-charset")

    assert (text, codec) == ("试用申请", "utf-8")


def test_html_only_body_is_converted_to_text_without_the_quote():
    """An HTML-only message yields its visible text; script, style, quote dropped."""
    draft = parse_fixture("html_only.eml")

    assert draft.text == "Hello Li,\n\nThe trial went well & we want to 继续试用."
    assert draft.attributes["has_html"] is True
    assert draft.attributes["body_length"] == 111


def test_plain_text_part_is_preferred_over_html():
    """In multipart/alternative the text/plain part is the body."""
    draft = parse_fixture("attachments.eml")

    assert draft.text == "请查收报价单和清单。"
    assert draft.attributes["has_html"] is True


def test_attachments_are_listed_with_decoded_names_and_sizes():
    """RFC 2047 (GBK) and RFC 2231 (UTF-8) file names decode; sizes count bytes."""
    draft = parse_fixture("attachments.eml")

    assert draft.attributes["attachments"] == [
        {"name": "报价单.pdf", "size": 96, "content_type": "application/pdf"},
        {
            "name": "清单.xlsx",
            "size": 256,
            "content_type": (
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            ),
        },
    ]


def test_attached_message_is_an_attachment_not_the_body():
    """A message/rfc822 part is listed as an attachment; its text is not read."""
    payload = (
        b"From: a@x.cn\nDate: Mon, 4 Mar 2024 09:00:00 +0800\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain\n\nsee attached\n--b\n"
        b"Content-Type: message/rfc822\n\nFrom: c@y.cn\nSubject: inner\n\ninner text\n"
        b"--b--\n"
    )

    draft = parse_bytes(payload)

    assert draft.text == "see attached"
    assert [item["name"] for item in draft.attributes["attachments"]] == ["message.eml"]


def test_chinese_outlook_quote_is_stripped_but_full_length_kept():
    """Text after -----原始邮件----- is dropped; body_length counts the whole body."""
    draft = parse_fixture("sent_gbk.eml")

    assert draft.text == (
        "王经理您好：\n\n附件是朱镕基路项目的正式报价，请查收。\n有问题随时联系。\n\n李雷"
    )
    assert draft.attributes["body_length"] == 144


def test_foxmail_quote_is_stripped():
    """The Foxmail/QQ separator line with 原始邮件 between dashes ends the text."""
    draft = parse_fixture("foxmail_reply.eml")

    assert draft.text == "好的，合同我们下周签。"


def test_english_gmail_quote_with_wrapped_attribution_is_stripped():
    """A Gmail "On ... <a@b>\\nwrote:" attribution and its "> " lines are dropped."""
    draft = parse_fixture("received_en.eml")

    assert draft.text == (
        "Hi Li Lei,\n\nThe price is a bit high for us. Can you offer a discount for a\n"
        "three-year contract?\n\nBest,\nWang Fang"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Yes.\n> Can you ship?\nAnd the price?\n> ok", "Yes.\nAnd the price?"),
        (
            "可以。\n\n发件人：王芳\n发送时间：2024年3月4日\n主题：询价\n请报价",
            "可以。",
        ),
        ("OK\n\nFrom: Wang\nSent: Monday\nTo: Li\n\nold text", "OK"),
        ("好的\n\n在 2024年3月1日 周五 10:00，张三 <z@x.cn> 写道：\n> 报价呢", "好的"),
        ("收到\n王芳 <w@x.cn> 于2024年3月1日周五 10:00写道：\n之前的内容", "收到"),
        ("Thanks\n-----Original Message-----\nFrom: x", "Thanks"),
        (
            "From: the start of our talk\nwe agreed",
            "From: the start of our talk\nwe agreed",
        ),
    ],
)
def test_quoted_replies_are_stripped_in_chinese_and_english(body, expected):
    """Quoted lines and the quote headers of common clients end what trackers read."""
    stripped = strip_quoted_text(body)

    assert stripped == expected


def test_forward_is_flagged_and_the_forwarded_message_not_read():
    """A forward's subject prefix sets is_forward; the forwarded text is not read."""
    draft = parse_fixture("forward.eml")

    assert draft.attributes["is_forward"] is True
    assert draft.attributes["is_reply"] is False
    assert draft.text == "赵总，客户在问价格，您看一下。"


def test_missing_message_id_uses_a_digest_of_the_raw_bytes():
    """Without Message-ID the source id is the sha256 of the payload, every time."""
    payload = (FIXTURES / "no_message_id.eml").read_bytes()

    first, second = parse_bytes(payload), parse_bytes(payload)

    expected = "sha256:" + hashlib.sha256(payload).hexdigest()
    assert first.source_id == second.source_id == expected
    assert first.thread_ref == "email_thread:" + expected
    assert first.attributes["message_id"] is None


def test_missing_date_falls_back_to_the_topmost_received_header():
    """Without Date, the date the last server wrote in Received is occurred_at."""
    draft = parse_fixture("no_message_id.eml")

    assert draft.occurred_at == dt.datetime(2024, 3, 8, 1, 0, tzinfo=dt.UTC)
    assert draft.attributes["date_source"] == "received"


def test_date_with_unknown_zone_is_read_as_utc():
    """A Date ending in -0000 (zone unknown) is taken as UTC."""
    draft = parse_fixture("html_only.eml")

    assert draft.occurred_at == dt.datetime(2024, 3, 6, 2, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" <Abc.Def@EXAMPLE.Com> ", "Abc.Def@example.com"),
        ("<a b@x.cn>", "ab@x.cn"),
        ("no-brackets@X.CN", "no-brackets@x.cn"),
        ("<>", None),
        (
            "<" + "x" * 300 + "@x.cn>",
            "msgid-sha256:"
            + hashlib.sha256(("x" * 300 + "@x.cn").encode()).hexdigest(),
        ),
    ],
)
def test_message_ids_are_normalised(raw, expected):
    """Angle brackets and spaces go, the domain is lower-cased, huge ids are hashed."""
    normalised = normalise_message_id(raw)

    assert normalised == expected


def test_attributes_are_json_serialisable():
    """Every attribute survives a JSON round trip unchanged."""
    draft = parse_fixture("attachments.eml")

    round_tripped = json.loads(json.dumps(draft.attributes, ensure_ascii=False))

    assert round_tripped == dict(draft.attributes)


def test_mbox_is_split_into_one_record_per_message():
    """Each mbox message is a record with its number in the locator, >From unquoted."""
    records = list(read_records(FIXTURES / "thread.mbox"))

    assert [record.locator for record in records] == [
        "thread.mbox message 1",
        "thread.mbox message 2",
        "thread.mbox message 3",
    ]
    assert b"\nFrom the old days, a line" in records[1].payload
    assert records[0].payload.startswith(b"From: li.lei@acme.cn\n")


def test_folder_reads_every_eml_and_mbox_sorted(tmp_path):
    """A folder yields its .eml and .mbox files (also nested) sorted; others ignored."""
    (tmp_path / "b.eml").write_bytes(b"From: b@x.cn\n\nb\n")
    (tmp_path / "a.EML").write_bytes(b"From: a@x.cn\n\na\n")
    (tmp_path / "notes.txt").write_text("not mail", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.mbox").write_bytes((FIXTURES / "thread.mbox").read_bytes())

    locators = [record.locator for record in read_records(tmp_path)]

    assert locators == [
        "a.EML",
        "b.eml",
        "sub/c.mbox message 1",
        "sub/c.mbox message 2",
        "sub/c.mbox message 3",
    ]


def test_registry_builds_the_connector_and_reads_its_files():
    """The registry name "email" gives this connector and this reader."""
    built = build_connector("email", {"internal_domains": ["acme.cn"]})
    records = list(registry_read_records("email", FIXTURES / "thread.mbox"))

    assert isinstance(built, EmailConnector)
    assert len(records) == 3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"x", "expected a .eml or .mbox file"),
        ("broken.mbox", b"not an mbox at all\n", "no message found"),
    ],
)
def test_unusable_files_raise_invalid_input(tmp_path, name, content, message):
    """A file of another kind, or an mbox without From lines, is rejected."""
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(InvalidInput, match=message):
        list(read_records(path))


def test_missing_path_raises_invalid_input(tmp_path):
    """A path that does not exist is rejected before anything is read."""
    with pytest.raises(InvalidInput, match="no such file or folder"):
        read_records(tmp_path / "absent.eml")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"", "payload is empty"),
        (b"  \r\n\r\n", "payload is empty"),
        (b"just some text, not a message", "no header found"),
        (b"\x00\xff\xfe garbage \x89PNG", "no header found"),
        (b"To: a@x.cn\nDate: Mon, 4 Mar 2024 09:00:00 +0800\n\nhi", "From header"),
        (b"From: nobody\nDate: Mon, 4 Mar 2024 09:00:00 +0800\n\nhi", "From"),
        (b"From: a@x.cn\nSubject: no date\n\nhi", "Date"),
        (b"From: a@x.cn\nDate: the day after tomorrow\n\nhi", "Date"),
    ],
)
def test_malformed_messages_raise_malformed_payload_naming_the_field(payload, field):
    """Empty, headerless, sender-less or undated input is malformed, field named."""
    with pytest.raises(MalformedPayload, match=field) as caught:
        connector().parse(RawRecord(payload, locator="INBOX uid 9"))

    assert caught.value.message.startswith("INBOX uid 9: ")


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"internal_domains": []},
        {"internal_domains": ["a b.cn"]},
        {"internal_domains": ["user@acme.cn"]},
        {"internal_domains": "acme.cn"},
        {"internal_domains": ["acme.cn"], "unknown": 1},
    ],
)
def test_bad_config_raises_invalid_input(config):
    """A missing, empty or malformed internal_domains list is refused."""
    with pytest.raises(InvalidInput, match="email connector config"):
        EmailConnector(config)


def test_internal_domains_are_normalised_to_lower_case():
    """Domains are stored lower-cased and without a leading @."""
    built = EmailConnector({"internal_domains": [" ACME.cn", "@Acme.COM.cn"]})

    assert built.config.internal_domains == ("acme.cn", "acme.com.cn")


HEADER_LINES = st.sampled_from(
    [
        b"From: a@x.cn\n",
        b"From: =?gbk?B?wO7A1w==?= <l@acme.cn>\n",
        b"From: \xc0\xee <\xff@x>\n",
        b'To: a@x.cn, <>, "q\\"" <b@y>\n',
        b"Date: Mon, 4 Mar 2024 09:00:00 +0800\n",
        b"Date: 99 Foo 99999 99:99:99 +9999\n",
        b"Received: x; Mon, 4 Mar 2024 09:00:00 -0000\n",
        b"Message-ID: <a@b>\n",
        b"References: <a@b> <c\n",
        b"Subject: =?utf-8?b?not base64!?=\n",
        b'Content-Type: multipart/mixed; boundary="b"\n',
        b"Content-Type: text/html; charset=x-unknown\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Disposition: attachment; filename*=gbk''%C0%EE\n",
        b"\n--b\nContent-Type: message/rfc822\n\n",
        b"Content-Type: text/plain; charset=gbk\n",
        b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n",
        b"Content-Type: text/html\n\n<p>x</p><pre>a\nb</pre><blockquote>",
        b"\n--b--\n",
        b"\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.tuples(st.lists(HEADER_LINES, max_size=12), st.binary(max_size=200)).map(
            lambda parts: b"".join(parts[0]) + parts[1]
        ),
    )
)
def test_arbitrary_bytes_parse_or_raise_invalid_input(payload):
    """Any bytes give one draft or an InvalidInput subclass, never another error."""
    try:
        drafts = connector().parse(RawRecord(payload))
    except InvalidInput:
        return

    assert len(drafts) == 1
    json.dumps(drafts[0].attributes)
