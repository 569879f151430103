"""WeCom clients against a local fake of qyapi.weixin.qq.com.

Request and answer shapes follow the official 获取access_token and 发送应用消息
pages and the 群机器人 webhook page (errcode/errmsg, msgid, 40014/42001,
81013, 93000).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels.fakes import FakeWeCom, Fault, serving
from waggle.channels import Message, PlatformRejected, PlatformUnavailable
from waggle.channels.service import build_channel
from waggle.channels.wecom import TokenCache, WeComAppChannel, WeComRobotChannel
from waggle.core.clock import FixedClock


@pytest.fixture
def wecom() -> Iterator[FakeWeCom]:
    with serving(FakeWeCom()) as fake:
        yield fake


def app_channel(fake: FakeWeCom, tokens: TokenCache | None = None) -> WeComAppChannel:
    channel = build_channel(
        "wecom_app",
        {
            "corp_id": fake.corp_id,
            "corp_secret": fake.corp_secret,
            "agent_id": fake.agent_id,
            "base_url": fake.base_url,
            "timeout_seconds": 2,
        },
        tokens=tokens or TokenCache(),
    )
    assert isinstance(channel, WeComAppChannel)
    return channel


def robot_channel(fake: FakeWeCom) -> WeComRobotChannel:
    channel = build_channel(
        "wecom_robot", {"key": fake.robot_key, "base_url": fake.base_url}
    )
    assert isinstance(channel, WeComRobotChannel)
    return channel


def note(**values: object) -> Message:
    fields: dict[str, object] = {
        "title": "商机跟进提醒",
        "body": "华东电力的商机已 7 天没有跟进。",
        "address": "zhangsan",
    }
    fields.update(values)
    return Message(**fields)  # type: ignore[arg-type]


def test_app_text_message_fetches_a_token_and_posts_the_documented_body(wecom):
    """A plain message is msgtype text for touser and agentid; the msgid comes back."""
    channel = app_channel(wecom)

    receipt = channel.send(note())

    assert wecom.problems == []
    assert [(r.method, r.path) for r in wecom.requests] == [
        ("GET", "/cgi-bin/gettoken"),
        ("POST", "/cgi-bin/message/send"),
    ]
    assert wecom.requests[0].query == {
        "corpid": ["ww1234567890abcdef"],
        "corpsecret": ["app-secret-0001"],
    }
    assert wecom.requests[1].query == {"access_token": ["accesstoken000001"]}
    assert (
        wecom.requests[1].headers["content-type"] == "application/json; charset=utf-8"
    )
    assert wecom.sent == [
        {
            "touser": "zhangsan",
            "agentid": 1000002,
            "msgtype": "text",
            "text": {"content": "商机跟进提醒\n华东电力的商机已 7 天没有跟进。"},
        }
    ]
    assert (receipt.channel, receipt.recipient, receipt.platform_message_id) == (
        "wecom_app",
        "wecom:zhangsan",
        "msgid-1",
    )


def test_app_message_with_a_link_is_a_textcard_with_a_localised_button(wecom):
    """A link turns the message into a textcard whose btntxt follows the locale."""
    channel = app_channel(wecom)

    channel.send(note(link_url="https://waggle.example/o/42", locale="en"))

    assert wecom.problems == []
    assert wecom.sent[0]["msgtype"] == "textcard"
    assert wecom.sent[0]["textcard"] == {
        "title": "商机跟进提醒",
        "description": "华东电力的商机已 7 天没有跟进。",
        "url": "https://waggle.example/o/42",
        "btntxt": "View details",
    }


def test_app_markdown_message_sends_msgtype_markdown(wecom):
    """A message with markdown goes out as msgtype markdown with that content."""
    channel = app_channel(wecom)

    channel.send(note(markdown="**华东电力** 需要跟进"))

    assert wecom.problems == []
    assert wecom.sent[0]["msgtype"] == "markdown"
    assert wecom.sent[0]["markdown"] == {"content": "**华东电力** 需要跟进"}


def test_token_is_cached_between_sends(wecom):
    """Two messages within the token's lifetime call gettoken once."""
    channel = app_channel(wecom)

    channel.send(note())
    channel.send(note(address="lisi"))

    assert wecom.token_requests == 1
    assert [r.query["access_token"] for r in wecom.requests[1:]] == [
        ["accesstoken000001"],
        ["accesstoken000001"],
    ]


def test_token_cache_is_shared_by_channels_built_alike(wecom):
    """A second channel built from the same settings reuses the cached token."""
    tokens = TokenCache()

    app_channel(wecom, tokens).send(note())
    app_channel(wecom, tokens).send(note())

    assert wecom.token_requests == 1


def test_token_is_fetched_again_once_it_expires(wecom, fixed_clock: FixedClock):
    """After expires_in (less the safety margin) the next send fetches a new token."""
    channel = app_channel(wecom)
    channel.send(note())

    fixed_clock.advance(seconds=7200 - 300)
    channel.send(note())

    assert wecom.token_requests == 2
    assert wecom.requests[-1].query == {"access_token": ["accesstoken000002"]}


def test_expired_token_answer_42001_refreshes_the_token_and_resends(wecom):
    """An errcode 42001 answer drops the cached token, fetches one and sends again."""
    channel = app_channel(wecom)
    channel.send(note())
    wecom.expire_tokens()

    receipt = channel.send(note())

    assert wecom.token_requests == 2
    assert [r.path for r in wecom.requests[2:]] == [
        "/cgi-bin/message/send",
        "/cgi-bin/gettoken",
        "/cgi-bin/message/send",
    ]
    assert receipt.platform_message_id == "msgid-2"


def test_invalid_token_answer_40014_refreshes_the_token(wecom):
    """A token the platform does not know (errcode 40014) is replaced as well."""
    tokens = TokenCache()
    channel = app_channel(wecom, tokens)
    tokens.put(channel._token_key, "forged-token", expires_in=7200)

    receipt = channel.send(note())

    assert wecom.token_requests == 1
    assert receipt.platform_message_id == "msgid-1"


def test_unknown_member_is_a_permanent_error_with_code_81013(wecom):
    """A userid outside the app's visible range is rejected, code 81013 in details."""
    channel = app_channel(wecom)

    with pytest.raises(PlatformRejected) as caught:
        channel.send(note(address="wangwu"))

    assert caught.value.details["platform_code"] == "81013"
    assert "81013" in caught.value.message


def test_wrong_secret_fails_gettoken_permanently(wecom):
    """errcode 40001 from gettoken is a permanent error naming the code."""
    channel = build_channel(
        "wecom_app",
        {
            "corp_id": wecom.corp_id,
            "corp_secret": "not-the-secret",
            "agent_id": wecom.agent_id,
            "base_url": wecom.base_url,
        },
        tokens=TokenCache(),
    )

    with pytest.raises(PlatformRejected) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "40001"


def test_system_busy_errcode_is_transient(wecom):
    """errcode -1 (system busy) is raised as a retryable upstream failure."""
    channel = app_channel(wecom)
    wecom.answer_next({"errcode": -1, "errmsg": "system busy"})

    with pytest.raises(PlatformUnavailable) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "-1"


def test_http_503_is_transient(wecom):
    """A 503 from the platform is a retryable upstream failure."""
    channel = app_channel(wecom)
    wecom.fail_next(Fault(status=503))

    with pytest.raises(PlatformUnavailable) as caught:
        channel.send(note())

    assert caught.value.details["platform_code"] == "http_503"


def test_robot_text_message_posts_to_the_webhook_key_with_mentions(wecom):
    """A robot message posts msgtype text to webhook/send?key= and @s the mobiles."""
    channel = robot_channel(wecom)

    receipt = channel.send(note(address=None, employee_id=7, mentions=("13800000000",)))

    assert wecom.problems == []
    assert wecom.requests[0].query == {"key": [wecom.robot_key]}
    assert wecom.sent == [
        {
            "msgtype": "text",
            "text": {
                "content": "商机跟进提醒\n华东电力的商机已 7 天没有跟进。",
                "mentioned_mobile_list": ["13800000000"],
            },
        }
    ]
    assert receipt.recipient == "wecom_robot:693a…"


def test_robot_markdown_message_carries_the_link(wecom):
    """A robot markdown message ends with the link as a markdown link."""
    channel = robot_channel(wecom)

    channel.send(
        note(
            address=None,
            employee_id=7,
            markdown="**逾期**",
            link_url="https://w.example/1",
        )
    )

    assert wecom.sent == [
        {
            "msgtype": "markdown",
            "markdown": {"content": "**逾期**\n\n[查看详情](https://w.example/1)"},
        }
    ]


def test_robot_key_in_the_message_address_wins_and_a_wrong_one_is_rejected(wecom):
    """The message's address names the robot; an unknown key answers 93000."""
    channel = robot_channel(wecom)

    with pytest.raises(PlatformRejected) as caught:
        channel.send(note(address="some-other-key"))

    assert wecom.requests[0].query == {"key": ["some-other-key"]}
    assert caught.value.details["platform_code"] == "93000"
