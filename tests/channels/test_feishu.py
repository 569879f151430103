"""Feishu custom bot client against a local fake of open.feishu.cn.

The 自定义机器人 page's 签名校验 recipe: the HMAC-SHA256 *key* is
``timestamp + "\\n" + secret`` and the message is empty; the result is
base64-encoded and sent with the timestamp (seconds, as a string) in the JSON
body. The page gives the recipe and an example timestamp (1599360473) but no
worked signature, so the known answer below was computed with ``hmac``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator

import pytest

from tests.channels.fakes import FakeFeishu, feishu_sign, serving
from waggle.channels import Message, PlatformRejected, PlatformUnavailable
from waggle.channels.feishu import FeishuBotChannel, sign
from waggle.channels.service import build_channel
from waggle.core.clock import FixedClock

FIXED_SECONDS = 1772442000  # the fixed_clock fixture


@pytest.fixture
def feishu(fixed_clock: FixedClock) -> Iterator[FakeFeishu]:
    with serving(FakeFeishu()) as fake:
        yield fake


def bot(fake: FakeFeishu, *, secret: str | None = None) -> FeishuBotChannel:
    channel = build_channel(
        "feishu_bot",
        {
            "hook_token": fake.hook_token,
            "secret": secret or fake.secret,
            "base_url": fake.base_url,
        },
    )
    assert isinstance(channel, FeishuBotChannel)
    return channel


def note(**values: object) -> Message:
    fields: dict[str, object] = {
        "title": "赢单提醒",
        "body": "西部大区本周新增赢单 3 个。",
        "employee_id": 7,
    }
    fields.update(values)
    return Message(**fields)  # type: ignore[arg-type]


def test_sign_matches_a_value_computed_independently_with_hmac():
    """The signature is base64(HMAC-SHA256(key=ts+LF+secret, msg=b"")) as from hmac."""
    mac = hmac.new(b"1599360473\nfeishu-bot-secret-0001", b"", hashlib.sha256)

    signature = sign(1599360473, "feishu-bot-secret-0001")

    assert signature == base64.b64encode(mac.digest()).decode()
    assert signature == "8zp3VkxM9xHyjiyiNJHC8cROZZgzfwBaj/frpTCZKIg="


def test_text_message_posts_to_the_hook_with_string_timestamp_and_sign(feishu):
    """A text message carries timestamp (a string), sign, msg_type text and content."""
    channel = bot(feishu)

    receipt = channel.send(note())

    assert feishu.problems == []
    request = feishu.requests[0]
    assert request.path == f"/open-apis/bot/v2/hook/{feishu.hook_token}"
    assert request.body == {
        "timestamp": str(FIXED_SECONDS),
        "sign": feishu_sign(str(FIXED_SECONDS), "feishu-bot-secret-0001"),
        "msg_type": "text",
        "content": {"text": "赢单提醒\n西部大区本周新增赢单 3 个。"},
    }
    assert receipt.recipient == "feishu_bot:a1b2…"


def test_message_with_a_link_is_a_post_in_the_message_locale(feishu):
    """A link makes a rich-text post under zh_cn with a text line and an a tag."""
    channel = bot(feishu)

    channel.send(note(link_url="https://waggle.example/r/w"))

    assert feishu.problems == []
    assert feishu.sent[0]["msg_type"] == "post"
    assert feishu.sent[0]["content"] == {
        "post": {
            "zh_cn": {
                "title": "赢单提醒",
                "content": [
                    [{"tag": "text", "text": "西部大区本周新增赢单 3 个。"}],
                    [
                        {
                            "tag": "a",
                            "text": "查看详情",
                            "href": "https://waggle.example/r/w",
                        }
                    ],
                ],
            }
        }
    }


def test_english_post_uses_the_en_us_key(feishu):
    """An English message's post content sits under en_us."""
    channel = bot(feishu)

    channel.send(note(link_url="https://waggle.example/r/w", locale="en"))

    assert list(feishu.sent[0]["content"]["post"]) == ["en_us"]


def test_markdown_message_is_an_interactive_card(feishu):
    """Markdown makes an interactive card: plain-text header, markdown element."""
    channel = bot(feishu)

    channel.send(note(markdown="**3** 个赢单"))

    assert feishu.problems == []
    assert feishu.sent[0]["msg_type"] == "interactive"
    assert feishu.sent[0]["card"] == {
        "header": {"title": {"tag": "plain_text", "content": "赢单提醒"}},
        "elements": [{"tag": "markdown", "content": "**3** 个赢单"}],
    }


def test_wrong_secret_is_rejected_with_code_19021(feishu):
    """A signature made with another secret is refused for good, code 19021."""
    channel = bot(feishu, secret="not-the-secret")

    with pytest.raises(PlatformRejected) as caught:
        channel.send(note())

    assert feishu.problems == ["sign does not match"]
    assert caught.value.details["platform_code"] == "19021"


def test_frequency_limit_is_transient(feishu):
    """Code 11232 (frequency limited) is a retryable failure."""
    channel = bot(feishu)
    feishu.answer_next({"code": 11232, "msg": "frequency limited", "data": {}})

    with pytest.raises(PlatformUnavailable) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "11232"


def test_bot_without_secret_sends_no_signature():
    """Without 签名校验 the body holds msg_type and content only."""
    with serving(FakeFeishu(secret=None)) as fake:
        channel = build_channel(
            "feishu_bot", {"hook_token": fake.hook_token, "base_url": fake.base_url}
        )

        channel.send(note())

    assert fake.problems == []
    assert set(fake.requests[0].body) == {"msg_type", "content"}
