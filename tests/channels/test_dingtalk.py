"""DingTalk custom robot client against a local fake of oapi.dingtalk.com.

The signature recipe is the one the 自定义机器人 安全设置 (加签) page gives:
HMAC-SHA256 keyed with the secret over ``timestamp + "\\n" + secret``, base64,
then URL-encoded. The page publishes the recipe and code, not a worked value,
so the known answers below were computed with the ``hmac`` module from the
page's own example secret ("this is secret") and a fixed timestamp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.channels.fakes import FakeDingTalk, dingtalk_sign, serving
from waggle.channels import Message, PlatformRejected, PlatformUnavailable
from waggle.channels.dingtalk import DingTalkRobotChannel, sign
from waggle.channels.service import build_channel
from waggle.core.clock import FixedClock

FIXED_MS = 1772442000000  # 2026-03-02 09:00 UTC, the fixed_clock fixture


@pytest.fixture
def dingtalk(fixed_clock: FixedClock) -> Iterator[FakeDingTalk]:
    with serving(FakeDingTalk()) as fake:
        yield fake


def robot(fake: FakeDingTalk, secret: str | None = None) -> DingTalkRobotChannel:
    settings = {"access_token": fake.access_token, "base_url": fake.base_url}
    if secret or fake.secret:
        settings["secret"] = secret or fake.secret or ""
    channel = build_channel("dingtalk_robot", settings)
    assert isinstance(channel, DingTalkRobotChannel)
    return channel


def note(**values: object) -> Message:
    fields: dict[str, object] = {
        "title": "回款预警",
        "body": "合同 HT-2026-031 的第二笔回款已逾期 3 天。",
        "employee_id": 7,
    }
    fields.update(values)
    return Message(**fields)  # type: ignore[arg-type]


def test_sign_matches_a_value_computed_independently_with_hmac():
    """The signature equals base64(HMAC-SHA256(secret, ts+LF+secret)) from hmac."""
    secret, timestamp = "this is secret", 1577262236757
    mac = hmac.new(b"this is secret", b"1577262236757\nthis is secret", hashlib.sha256)

    signature = sign(timestamp, secret)

    assert signature == base64.b64encode(mac.digest()).decode()
    assert signature == "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="


def test_request_url_carries_millisecond_timestamp_and_url_encoded_sign():
    """The query holds access_token, the ms timestamp and the sign with %2B/%2F/%3D."""
    channel = build_channel(
        "dingtalk_robot",
        {"access_token": "abc123", "secret": "SEC3a0e1b2c3d4e5f60718293a4b5c6d7e8f9"},
    )
    assert isinstance(channel, DingTalkRobotChannel)

    url = channel.request_url(FIXED_MS)

    assert url == (
        "https://oapi.dingtalk.com/robot/send?access_token=abc123"
        "&timestamp=1772442000000"
        "&sign=DEcR8taK391DxVo%2FHctNyJ3HyEA%2BYtaBfixVoEj21uc%3D"
    )


def test_text_message_is_signed_and_accepted(dingtalk):
    """A text message passes the fake's recomputed signature and gets errcode 0."""
    channel = robot(dingtalk)

    receipt = channel.send(note())

    assert dingtalk.problems == []
    request = dingtalk.requests[0]
    assert request.query["timestamp"] == [str(FIXED_MS)]
    assert request.query["sign"] == [
        dingtalk_sign(str(FIXED_MS), dingtalk.secret or "")
    ]
    assert dingtalk.sent == [
        {
            "msgtype": "text",
            "text": {"content": "回款预警\n合同 HT-2026-031 的第二笔回款已逾期 3 天。"},
        }
    ]
    assert receipt.recipient == "dingtalk_robot:d5b6…"


def test_mentions_go_into_at_mobiles_and_the_text(dingtalk):
    """Mobiles to @ appear in at.atMobiles and as @mobile in the content."""
    channel = robot(dingtalk)

    channel.send(note(mentions=("13800000000",)))

    assert dingtalk.sent[0]["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    assert dingtalk.sent[0]["text"]["content"].endswith(" @13800000000")


def test_markdown_message_has_title_and_text(dingtalk):
    """A markdown message sends msgtype markdown with the title and the markdown."""
    channel = robot(dingtalk)

    channel.send(note(markdown="### 回款预警\n- 逾期 3 天"))

    assert dingtalk.problems == []
    assert dingtalk.sent[0] == {
        "msgtype": "markdown",
        "markdown": {"title": "回款预警", "text": "### 回款预警\n- 逾期 3 天"},
    }


def test_message_with_a_link_is_an_action_card(dingtalk):
    """A link makes an actionCard with a single button captioned in the locale."""
    channel = robot(dingtalk)

    channel.send(note(link_url="https://waggle.example/c/31", locale="en", body="Late"))

    assert dingtalk.problems == []
    assert dingtalk.sent[0] == {
        "msgtype": "actionCard",
        "actionCard": {
            "title": "回款预警",
            "text": "### 回款预警\n\nLate",
            "singleTitle": "View details",
            "singleURL": "https://waggle.example/c/31",
        },
    }


def test_wrong_secret_is_rejected_with_errcode_310000(dingtalk):
    """A signature made with another secret fails the check: permanent, code 310000."""
    channel = robot(dingtalk, secret="SECnot-the-right-one")

    with pytest.raises(PlatformRejected) as caught:
        channel.send(note())

    assert dingtalk.problems == ["sign does not match"]
    assert caught.value.details["platform_code"] == "310000"


def test_timestamp_over_an_hour_off_the_platform_clock_is_rejected(fixed_clock):
    """When the platform's clock is two hours ahead, the signed request is refused."""
    with serving(FakeDingTalk(clock_skew_seconds=7200)) as fake:
        channel = robot(fake)

        with pytest.raises(PlatformRejected) as caught:
            channel.send(note())

    assert fake.problems == ["timestamp more than an hour off"]
    assert caught.value.details["platform_code"] == "310000"


def test_sending_too_fast_is_transient(dingtalk):
    """errcode 130101 (over 20 messages a minute) is a retryable failure."""
    channel = robot(dingtalk)
    dingtalk.answer_next({"errcode": 130101, "errmsg": "send too fast"})

    with pytest.raises(PlatformUnavailable) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "130101"


def test_robot_without_secret_sends_no_timestamp_or_sign():
    """Without 加签 the query carries the access token only."""
    with serving(FakeDingTalk(secret=None)) as fake:
        channel = robot(fake)

        channel.send(note())

    assert fake.problems == []
    assert fake.requests[0].query == {"access_token": [fake.access_token]}
    assert urllib.parse.urlsplit(channel.request_url(FIXED_MS)).query == (
        f"access_token={fake.access_token}"
    )
