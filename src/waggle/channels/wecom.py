"""WeCom (企业微信) delivery: application messages and group robots.

Application messages (发送应用消息) need an access token from
``GET /cgi-bin/gettoken?corpid=&corpsecret=``, kept until ``expires_in`` runs
out (less a margin) and fetched anew when the platform answers 40014 (invalid
token) or 42001 (expired token). The message goes to
``POST /cgi-bin/message/send?access_token=`` as text, markdown or a textcard
(when it carries a link). Group robots (群机器人) take
``POST /cgi-bin/webhook/send?key=`` with text or markdown. Every answer is
JSON with ``errcode`` (0 is success) and ``errmsg``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
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
    utf8_truncate,
)
from waggle.channels.errors import MessageInvalid, PlatformRejected, PlatformUnavailable
from waggle.core.clock import now

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
TOKEN_EXPIRED_CODES = frozenset({40014, 42001})
# -1: system busy; 45009: API call frequency over the limit; 45033: too many
# concurrent calls. Everything else non-zero is the caller's mistake.
TRANSIENT_CODES = frozenset({-1, 45009, 45033})
TOKEN_MARGIN = dt.timedelta(minutes=5)
TEXTCARD_DESCRIPTION_BYTES = 512
TEXTCARD_TITLE_BYTES = 128
TEXT_BYTES = 2048
MARKDOWN_BYTES = 4096


@dataclass(frozen=True)
class WeComAppSettings:
    """Corp id, app secret and agent id of one self-built WeCom application."""

    corp_id: str
    corp_secret: str
    agent_id: int
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> WeComAppSettings:
        """Validate a settings mapping.

        Raises:
            ChannelSettingsInvalid: a field is missing, unknown or mistyped.
        """
        fields = {"corp_id", "corp_secret", "agent_id", "base_url", "timeout_seconds"}
        reader = SettingsReader("wecom_app", settings, fields)
        return cls(
            corp_id=reader.text("corp_id"),
            corp_secret=reader.text("corp_secret"),
            agent_id=reader.integer("agent_id"),
            base_url=reader.base_url(DEFAULT_BASE_URL),
            timeout_seconds=reader.seconds(
                "timeout_seconds", default=DEFAULT_TIMEOUT_SECONDS
            ),
        )


@dataclass(frozen=True)
class WeComRobotSettings:
    """The webhook key of one group robot (a message's address may name another)."""

    key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> WeComRobotSettings:
        """Validate a settings mapping.

        Raises:
            ChannelSettingsInvalid: a field is unknown or mistyped.
        """
        reader = SettingsReader(
            "wecom_robot", settings, {"key", "base_url", "timeout_seconds"}
        )
        return cls(
            key=reader.optional_text("key"),
            base_url=reader.base_url(DEFAULT_BASE_URL),
            timeout_seconds=reader.seconds(
                "timeout_seconds", default=DEFAULT_TIMEOUT_SECONDS
            ),
        )


@dataclass
class _CachedToken:
    value: str
    expires_at: dt.datetime


class TokenCache:
    """Access tokens per application, shared by every client in the process.

    WeCom limits calls to gettoken, so a token is reused until shortly before
    it expires; the key includes a digest of the secret, never the secret.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, _CachedToken] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            cached = self._tokens.get(key)
        if cached is None or now() >= cached.expires_at:
            return None
        return cached.value

    def put(self, key: str, value: str, *, expires_in: int) -> None:
        expires_at = now() + dt.timedelta(seconds=expires_in) - TOKEN_MARGIN
        with self._lock:
            self._tokens[key] = _CachedToken(value, expires_at)

    def forget(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)


SHARED_TOKENS = TokenCache()


class WeComAppChannel:
    """Sends application messages to one member (``touser``) of the corp."""

    name = "wecom_app"

    def __init__(self, settings: WeComAppSettings, *, tokens: TokenCache | None = None):
        self.settings = settings
        self.tokens = tokens if tokens is not None else SHARED_TOKENS
        digest = hashlib.sha256(settings.corp_secret.encode("utf-8")).hexdigest()
        self._token_key = f"{settings.base_url}|{settings.corp_id}|{digest[:16]}"

    def recipient_label(self, message: Message) -> str:
        return f"wecom:{message.address or ''}"

    def send(self, message: Message) -> DeliveryReceipt:
        """Send one application message; refresh the token once if it went stale.

        Raises:
            MessageInvalid: the message has no WeCom userid as its address.
            PlatformUnavailable, PlatformRejected: as the platform answered.
        """
        if not message.address:
            raise MessageInvalid(
                "wecom_app message.address: expected the recipient's WeCom userid"
            )
        body = self.request_body(message)
        answer = self._post_message(body, token=self.access_token())
        if answer.get("errcode") in TOKEN_EXPIRED_CODES:
            logger.info(
                "wecom token refreshed", extra={"errcode": answer.get("errcode")}
            )
            self.tokens.forget(self._token_key)
            answer = self._post_message(body, token=self.access_token())
        check_answer(self.name, answer)
        if answer.get("invaliduser"):
            raise PlatformRejected(
                f"wecom_app: userid {message.address!r} is not a member the "
                f"application may reach",
                platform_code="invaliduser",
                invaliduser=answer["invaliduser"],
            )
        return DeliveryReceipt(
            self.name, self.recipient_label(message), _text(answer.get("msgid"))
        )

    def request_body(self, message: Message) -> dict[str, Any]:
        """Return the JSON body of 发送应用消息 for ``message``."""
        body: dict[str, Any] = {
            "touser": message.address,
            "agentid": self.settings.agent_id,
        }
        if message.link_url:
            body["msgtype"] = "textcard"
            body["textcard"] = {
                "title": utf8_truncate(message.title, TEXTCARD_TITLE_BYTES),
                "description": utf8_truncate(message.body, TEXTCARD_DESCRIPTION_BYTES),
                "url": message.link_url,
                "btntxt": message.details_label,
            }
        elif message.markdown:
            body["msgtype"] = "markdown"
            body["markdown"] = {
                "content": utf8_truncate(message.markdown_text(), MARKDOWN_BYTES)
            }
        else:
            body["msgtype"] = "text"
            body["text"] = {"content": utf8_truncate(message.plain_text(), TEXT_BYTES)}
        return body

    def access_token(self) -> str:
        """Return a cached access token or fetch one from gettoken.

        Raises:
            PlatformUnavailable, PlatformRejected: gettoken failed.
        """
        cached = self.tokens.get(self._token_key)
        if cached is not None:
            return cached
        query = urllib.parse.urlencode(
            {"corpid": self.settings.corp_id, "corpsecret": self.settings.corp_secret}
        )
        answer = request_json(
            f"{self.settings.base_url}/cgi-bin/gettoken?{query}",
            channel=self.name,
            timeout=self.settings.timeout_seconds,
        )
        check_answer(self.name, answer)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailable(
                "wecom_app: gettoken answered without an access_token",
                platform_code="bad_answer",
            )
        expires_in = answer.get("expires_in")
        seconds = expires_in if isinstance(expires_in, int) else 7200
        self.tokens.put(self._token_key, token, expires_in=seconds)
        return token

    def _post_message(self, body: dict[str, Any], *, token: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"access_token": token})
        return request_json(
            f"{self.settings.base_url}/cgi-bin/message/send?{query}",
            channel=self.name,
            payload=body,
            timeout=self.settings.timeout_seconds,
        )


class WeComRobotChannel:
    """Posts text or markdown to one group chat through its robot's webhook key."""

    name = "wecom_robot"

    def __init__(self, settings: WeComRobotSettings):
        self.settings = settings

    def recipient_label(self, message: Message) -> str:
        return f"wecom_robot:{masked(self._key(message))}"

    def send(self, message: Message) -> DeliveryReceipt:
        """Post one robot message.

        Raises:
            MessageInvalid: neither the message nor the settings name a key.
            PlatformUnavailable, PlatformRejected: as the platform answered.
        """
        query = urllib.parse.urlencode({"key": self._key(message)})
        answer = request_json(
            f"{self.settings.base_url}/cgi-bin/webhook/send?{query}",
            channel=self.name,
            payload=self.request_body(message),
            timeout=self.settings.timeout_seconds,
        )
        check_answer(self.name, answer)
        return DeliveryReceipt(self.name, self.recipient_label(message))

    def request_body(self, message: Message) -> dict[str, Any]:
        """Return the robot's JSON body: markdown when given, text otherwise."""
        if message.markdown:
            content = utf8_truncate(message.markdown_text(), MARKDOWN_BYTES)
            return {"msgtype": "markdown", "markdown": {"content": content}}
        text: dict[str, Any] = {
            "content": utf8_truncate(message.plain_text(), TEXT_BYTES)
        }
        if message.mentions:
            text["mentioned_mobile_list"] = list(message.mentions)
        return {"msgtype": "text", "text": text}

    def _key(self, message: Message) -> str:
        key = message.address or self.settings.key
        if not key:
            raise MessageInvalid(
                "wecom_robot: no webhook key; expected message.address or settings.key"
            )
        return key


def check_answer(channel: str, answer: Mapping[str, Any]) -> None:
    """Raise the error kind ``errcode`` stands for; return on ``errcode`` 0.

    Raises:
        PlatformUnavailable: a busy or rate-limit code.
        PlatformRejected: any other non-zero code.
    """
    code = answer.get("errcode", 0)
    if code == 0:
        return
    message = f"{channel}: WeCom answered errcode {code} ({answer.get('errmsg', '')})"
    if code in TRANSIENT_CODES:
        raise PlatformUnavailable(message, platform_code=str(code))
    raise PlatformRejected(message, platform_code=str(code))


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
