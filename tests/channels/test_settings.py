"""Messages and channel settings are validated with messages naming the field."""

from __future__ import annotations

import pytest

from waggle.channels import (
    ChannelSettingsInvalid,
    Message,
    MessageInvalid,
    UnknownChannel,
    build_channel,
)
from waggle.channels.service import mask_settings
from waggle.channels.wecom import WeComAppChannel


def test_message_needs_an_employee_or_an_address():
    """A message without employee_id and address is refused."""
    with pytest.raises(MessageInvalid) as caught:
        Message(title="提醒", body="正文")

    assert caught.value.message == (
        "message: recipient missing; expected employee_id or address"
    )


def test_message_locale_must_be_zh_cn_or_en():
    """An unknown locale names the allowed ones."""
    with pytest.raises(MessageInvalid) as caught:
        Message(title="Hi", body="", employee_id=1, locale="fr")

    assert caught.value.message == (
        "message.locale: expected one of zh-CN, en, got 'fr'"
    )


def test_message_link_must_be_http():
    """A link that is not http(s) is refused."""
    with pytest.raises(MessageInvalid) as caught:
        Message(title="Hi", body="", employee_id=1, link_url="javascript:alert(1)")

    assert caught.value.message == (
        "message.link_url: expected an http(s) address, got 'javascript:alert(1)'"
    )


def test_wecom_app_settings_need_an_integer_agent_id():
    """agent_id must be a positive integer; the message names channel and field."""
    settings = {"corp_id": "ww1", "corp_secret": "s", "agent_id": "abc"}

    with pytest.raises(ChannelSettingsInvalid) as caught:
        build_channel("wecom_app", settings)

    assert caught.value.message == (
        "channel wecom_app settings.agent_id: expected a positive integer, got str"
    )


def test_digit_string_agent_id_is_accepted():
    """An agent id typed as digits in a form is read as the integer."""
    channel = build_channel(
        "wecom_app", {"corp_id": "ww1", "corp_secret": "s", "agent_id": "1000002"}
    )

    assert isinstance(channel, WeComAppChannel)
    assert channel.settings.agent_id == 1000002
    assert channel.settings.base_url == "https://qyapi.weixin.qq.com"


def test_missing_field_is_reported_as_missing():
    """A required field that is absent is named with 'missing'."""
    with pytest.raises(ChannelSettingsInvalid) as caught:
        build_channel("dingtalk_robot", {"secret": "SECx"})

    assert caught.value.message == (
        "channel dingtalk_robot settings.access_token: expected a non-empty string, "
        "missing"
    )


def test_unknown_settings_field_is_refused():
    """A misspelt field is not ignored."""
    with pytest.raises(ChannelSettingsInvalid) as caught:
        build_channel("feishu_bot", {"hook_token": "t", "secrett": "x"})

    assert caught.value.message == (
        "channel feishu_bot settings: unknown fields ['secrett']; "
        "expected base_url, hook_token, secret, timeout_seconds"
    )


def test_base_url_must_be_http():
    """A base URL without http(s) is refused."""
    with pytest.raises(ChannelSettingsInvalid) as caught:
        build_channel("wecom_robot", {"key": "k", "base_url": "ftp://x"})

    assert caught.value.message == (
        "channel wecom_robot settings.base_url: expected an http(s) address, got str"
    )


def test_email_settings_need_both_username_and_password():
    """A username without a password is refused."""
    settings = {"host": "mail", "from_address": "a@b.cn", "username": "u"}

    with pytest.raises(ChannelSettingsInvalid) as caught:
        build_channel("email", settings)

    assert caught.value.message == (
        "channel email settings: expected both username and password, or neither"
    )


def test_email_from_address_must_be_an_address():
    """from_address must look like an e-mail address."""
    with pytest.raises(ChannelSettingsInvalid) as caught:
        build_channel("email", {"host": "mail", "from_address": "waggle"})

    assert caught.value.message == (
        "channel email settings.from_address: expected an e-mail address, got 'waggle'"
    )


def test_email_port_defaults_follow_starttls():
    """Port 587 with STARTTLS, 25 without."""
    with_tls = build_channel("email", {"host": "m", "from_address": "a@b.cn"})
    plain = build_channel(
        "email", {"host": "m", "from_address": "a@b.cn", "use_starttls": False}
    )

    assert (with_tls.settings.port, plain.settings.port) == (587, 25)  # type: ignore[attr-defined]


def test_unknown_channel_lists_the_known_ones():
    """A channel name that does not exist names every channel that does."""
    with pytest.raises(UnknownChannel) as caught:
        build_channel("sms", {})

    assert caught.value.message == (
        "channel 'sms' does not exist; expected one of wecom_app, wecom_robot, "
        "dingtalk_robot, feishu_bot, email, inbox"
    )


def test_secrets_are_masked():
    """Every secret field is masked; other fields are kept."""
    masked = mask_settings(
        {"corp_id": "ww1", "corp_secret": "s", "agent_id": 2, "password": ""}
    )

    assert masked == {
        "corp_id": "ww1",
        "corp_secret": "******",
        "agent_id": 2,
        "password": "",
    }
