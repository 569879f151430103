"""DingTalk (钉钉) custom group robot: ``POST /robot/send?access_token=``.

With 加签 enabled the query also carries ``timestamp`` (milliseconds) and
``sign``: HMAC-SHA256 keyed with the secret over ``"{timestamp}\\n{secret}"``,
base64-encoded, then URL-encoded. The platform refuses a timestamp more than
an hour off. Messages go out as text, markdown or an actionCard (when they
carry a link); mobiles in ``at.atMobiles`` are also written into the text,
which is how DingTalk shows the mention. The answer is ``errcode``/``errmsg``.
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

DEFAULT_BASE_URL = "https://oapi.dingtalk.com"
# -1: system busy; 130101 and 410100: the robot sends too fast (20 a minute).
TRANSIENT_CODES = frozenset({-1, 130101, 410100})


@dataclass(frozen=True)
class DingTalkRobotSettings:
    """The robot's access token and, with 加签 on, its ``SEC…`` secret."""

    access_token: str
    secret: str | None = None
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> DingTalkRobotSettings:
        """Validate a settings mapping.

        Raises:
            ChannelSettingsInvalid: a field is missing, unknown or mistyped.
        """
        fields = {"access_token", "secret", "base_url", "timeout_seconds"}
        reader = SettingsReader("dingtalk_robot", settings, fields)
        return cls(
            access_token=reader.text("access_token"),
            secret=reader.optional_text("secret"),
            base_url=reader.base_url(DEFAULT_BASE_URL),
            timeout_seconds=reader.seconds(
                "timeout_seconds", default=DEFAULT_TIMEOUT_SECONDS
            ),
        )


def sign(timestamp_ms: int, secret: str) -> str:
    """Return the base64 signature of ``timestamp_ms`` (not yet URL-encoded)."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class DingTalkRobotChannel:
    """Posts to one DingTalk group through its custom robot."""

    name = "dingtalk_robot"

    def __init__(self, settings: DingTalkRobotSettings):
        self.settings = settings

    def recipient_label(self, message: Message) -> str:
        return f"dingtalk_robot:{masked(self.settings.access_token)}"

    def send(self, message: Message) -> DeliveryReceipt:
        """Post one robot message, signed when a secret is configured.

        Raises:
            PlatformUnavailable, PlatformRejected: as the platform answered.
        """
        answer = request_json(
            self.request_url(int(now().timestamp() * 1000)),
            channel=self.name,
            payload=self.request_body(message),
            timeout=self.settings.timeout_seconds,
        )
        check_answer(answer)
        return DeliveryReceipt(self.name, self.recipient_label(message))

    def request_url(self, timestamp_ms: int) -> str:
        """Return the send address for a request made at ``timestamp_ms``."""
        query = {"access_token": self.settings.access_token}
        if self.settings.secret:
            query["timestamp"] = str(timestamp_ms)
            query["sign"] = sign(timestamp_ms, self.settings.secret)
        # urlencode quotes with quote_plus: '+', '/' and '=' of the base64
        # signature become %2B, %2F and %3D, as the platform expects.
        return f"{self.settings.base_url}/robot/send?{urllib.parse.urlencode(query)}"

    def request_body(self, message: Message) -> dict[str, Any]:
        """Return the robot's JSON body: actionCard, markdown or text."""
        mentions = "".join(f" @{mobile}" for mobile in message.mentions)
        body: dict[str, Any]
        if message.link_url:
            text = message.markdown or f"### {message.title}\n\n{message.body}"
            body = {
                "msgtype": "actionCard",
                "actionCard": {
                    "title": message.title,
                    "text": text + mentions,
                    "singleTitle": message.details_label,
                    "singleURL": message.link_url,
                },
            }
        elif message.markdown:
            body = {
                "msgtype": "markdown",
                "markdown": {
                    "title": message.title,
                    "text": message.markdown + mentions,
                },
            }
        else:
            body = {
                "msgtype": "text",
                "text": {"content": message.plain_text() + mentions},
            }
        if message.mentions:
            body["at"] = {"atMobiles": list(message.mentions), "isAtAll": False}
        return body


def check_answer(answer: Mapping[str, Any]) -> None:
    """Raise the error kind ``errcode`` stands for; return on ``errcode`` 0.

    Raises:
        PlatformUnavailable: a busy or rate-limit code.
        PlatformRejected: any other non-zero code (310000 is a failed
            signature, keyword or IP check).
    """
    code = answer.get("errcode", 0)
    if code == 0:
        return
    text = (
        f"dingtalk_robot: DingTalk answered errcode {code} ({answer.get('errmsg', '')})"
    )
    if code in TRANSIENT_CODES:
        raise PlatformUnavailable(text, platform_code=str(code))
    raise PlatformRejected(text, platform_code=str(code))
