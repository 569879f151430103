"""Feishu (飞书) custom bot: ``POST /open-apis/bot/v2/hook/<token>``.

With 签名校验 enabled the JSON body carries ``timestamp`` (seconds, as a
string) and ``sign``: HMAC-SHA256 *keyed with* ``"{timestamp}\\n{secret}"``
over an empty message, base64-encoded (unlike DingTalk, where the secret is
the key and the string is the message). Messages go out as ``text``, ``post``
(rich text, when they carry a link) or ``interactive`` (a card with a
markdown element). The answer is ``code``/``msg`` (older hooks also send
``StatusCode``/``StatusMessage``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from waggle.channels.base import (
    DEFAULT_TIMEOUT_SECONDS,
    DeliveryReceipt,
    Message,
    SettingsReader,
    masked,
    request_json,
)
from waggle.channels.errors import PlatformRejected, PlatformUnavailable
from waggle.core.clock import now

DEFAULT_BASE_URL = "https://open.feishu.cn"
# 11232: frequency limited (100 a minute, 5 a second per bot).
TRANSIENT_CODES = frozenset({11232})
POST_LOCALE = {"zh-CN": "zh_cn", "en": "en_us"}


@dataclass(frozen=True)
class FeishuBotSettings:
    """The hook token (the last part of the webhook address) and optional secret."""

    hook_token: str
    secret: str | None = None
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> FeishuBotSettings:
        """Validate a settings mapping.

        Raises:
            ChannelSettingsInvalid: a field is missing, unknown or mistyped.
        """
        fields = {"hook_token", "secret", "base_url", "timeout_seconds"}
        reader = SettingsReader("feishu_bot", settings, fields)
        return cls(
            hook_token=reader.text("hook_token"),
            secret=reader.optional_text("secret"),
            base_url=reader.base_url(DEFAULT_BASE_URL),
            timeout_seconds=reader.seconds(
                "timeout_seconds", default=DEFAULT_TIMEOUT_SECONDS
            ),
        )


def sign(timestamp: int, secret: str) -> str:
    """Return the base64 signature Feishu expects for ``timestamp`` (seconds)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuBotChannel:
    """Posts to one Feishu group through its custom bot."""

    name = "feishu_bot"

    def __init__(self, settings: FeishuBotSettings):
        self.settings = settings

    def recipient_label(self, message: Message) -> str:
        return f"feishu_bot:{masked(self.settings.hook_token)}"

    def send(self, message: Message) -> DeliveryReceipt:
        """Post one bot message, signed when a secret is configured.

        Raises:
            PlatformUnavailable, PlatformRejected: as the platform answered.
        """
        token = urllib.parse.quote(self.settings.hook_token, safe="")
        answer = request_json(
            f"{self.settings.base_url}/open-apis/bot/v2/hook/{token}",
            channel=self.name,
            payload=self.request_body(message, timestamp=int(now().timestamp())),
            timeout=self.settings.timeout_seconds,
        )
        check_answer(answer)
        return DeliveryReceipt(self.name, self.recipient_label(message))

    def request_body(self, message: Message, *, timestamp: int) -> dict[str, Any]:
        """Return the bot's JSON body for a request made at ``timestamp``."""
        body: dict[str, Any] = {}
        if self.settings.secret:
            body["timestamp"] = str(timestamp)
            body["sign"] = sign(timestamp, self.settings.secret)
        if message.markdown:
            body["msg_type"] = "interactive"
            body["card"] = _card(message)
        elif message.link_url:
            body["msg_type"] = "post"
            body["content"] = {"post": {POST_LOCALE[message.locale]: _post(message)}}
        else:
            body["msg_type"] = "text"
            body["content"] = {"text": message.plain_text()}
        return body


def _post(message: Message) -> dict[str, Any]:
    lines: list[list[dict[str, str]]] = [[{"tag": "text", "text": message.body}]]
    if message.link_url:
        lines.append(
            [{"tag": "a", "text": message.details_label, "href": message.link_url}]
        )
    return {"title": message.title, "content": lines}


def _card(message: Message) -> dict[str, Any]:
    return {
        "header": {"title": {"tag": "plain_text", "content": message.title}},
        "elements": [{"tag": "markdown", "content": message.markdown_text()}],
    }


def check_answer(answer: Mapping[str, Any]) -> None:
    """Raise the error kind ``code`` stands for; return on ``code`` 0.

    Raises:
        PlatformUnavailable: the frequency limit.
        PlatformRejected: any other non-zero code (19021 is a failed
            signature or a stale timestamp, 19024 a missing keyword).
    """
    code = answer.get("code", answer.get("StatusCode", 0))
    if code == 0:
        return
    reason = answer.get("msg", answer.get("StatusMessage", ""))
    text = f"feishu_bot: Feishu answered code {code} ({reason})"
    if code in TRANSIENT_CODES:
        raise PlatformUnavailable(text, platform_code=str(code))
    raise PlatformRejected(text, platform_code=str(code))
