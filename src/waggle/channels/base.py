"""What every channel shares: the message, the receipt, the protocol and HTTP.

A :class:`Message` says what to tell whom; a :class:`Channel` turns it into one
platform request and answers with a :class:`DeliveryReceipt`, or raises
:class:`PlatformUnavailable` (retry later) or :class:`PlatformRejected` (give
up). The JSON-over-HTTP helpers here map network failures onto those two.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from waggle.channels.errors import (
    ChannelSettingsInvalid,
    MessageInvalid,
    PlatformRejected,
    PlatformUnavailable,
)

LOCALES = ("zh-CN", "en")
DETAILS_LABEL = {"zh-CN": "查看详情", "en": "View details"}
DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "Waggle-channels/1"


@dataclass(frozen=True)
class Message:
    """One notification: who gets it, what it says, and how to spot a repeat.

    ``employee_id`` names the Waggle employee (the inbox needs it);
    ``address`` is the channel's own address (a WeCom userid, a robot webhook
    key, an e-mail address). ``mentions`` are mobile numbers a group robot
    should @. ``dedup_key`` makes delivery on one channel happen at most once.

    Raises:
        MessageInvalid: no recipient, an empty title or an unknown locale.
    """

    title: str
    body: str
    employee_id: int | None = None
    address: str | None = None
    markdown: str | None = None
    link_url: str | None = None
    dedup_key: str | None = None
    locale: str = "zh-CN"
    source: str | None = None
    mentions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.employee_id is None and not self.address:
            raise MessageInvalid(
                "message: recipient missing; expected employee_id or address"
            )
        if not self.title.strip():
            raise MessageInvalid("message.title: expected a non-empty title")
        if self.locale not in LOCALES:
            raise MessageInvalid(
                f"message.locale: expected one of {', '.join(LOCALES)}, "
                f"got {self.locale!r}"
            )
        if self.link_url is not None and not self.link_url.startswith(
            ("http://", "https://")
        ):
            raise MessageInvalid(
                f"message.link_url: expected an http(s) address, got {self.link_url!r}"
            )

    @property
    def details_label(self) -> str:
        """Return the caption of the link button in the message's locale."""
        return DETAILS_LABEL[self.locale]

    def plain_text(self) -> str:
        """Return title, body and link as one plain-text block."""
        lines = [self.title, self.body]
        if self.link_url:
            lines.append(f"{self.details_label}: {self.link_url}")
        return "\n".join(line for line in lines if line)

    def markdown_text(self) -> str:
        """Return the markdown body (or the plain body), the link as a markdown link."""
        text = self.markdown or f"**{self.title}**\n\n{self.body}"
        if self.link_url:
            text += f"\n\n[{self.details_label}]({self.link_url})"
        return text


@dataclass(frozen=True)
class DeliveryReceipt:
    """What a platform answered to one accepted message."""

    channel: str
    recipient: str
    platform_message_id: str | None = None


@runtime_checkable
class Channel(Protocol):
    """A way to deliver a :class:`Message`: one platform, one configured sender."""

    name: str

    def recipient_label(self, message: Message) -> str:
        """Return how the delivery log names the recipient (never a secret)."""
        ...

    def send(self, message: Message) -> DeliveryReceipt:
        """Deliver ``message`` once.

        Raises:
            PlatformUnavailable: a transient failure; retrying may succeed.
            PlatformRejected: a permanent failure (bad address, bad signature).
            MessageInvalid: the message lacks what this channel needs.
        """
        ...


def request_json(
    url: str,
    *,
    channel: str,
    payload: Mapping[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """POST ``payload`` as UTF-8 JSON (GET without one) and return the JSON answer.

    Raises:
        PlatformUnavailable: no connection, a timeout, HTTP 429 or 5xx, or an
            answer that is not a JSON object.
        PlatformRejected: any other HTTP error status.
    """
    data = None
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if payload is not None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers["Content-Type"] = "application/json; charset=utf-8"
    request = urllib.request.Request(  # noqa: S310 - base URLs are http(s) by validation
        url, data=data, headers=headers, method="POST" if data else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(channel, exc) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise PlatformUnavailable(
            f"{channel}: no answer from the platform ({exc})",
            platform_code="network",
        ) from exc
    return _json_object(channel, raw)


def _http_error(channel: str, exc: urllib.error.HTTPError) -> Exception:
    status = exc.code
    exc.close()
    message = f"{channel}: the platform answered HTTP {status}"
    if status == 429 or status >= 500:
        return PlatformUnavailable(message, platform_code=f"http_{status}")
    return PlatformRejected(message, platform_code=f"http_{status}")


def _json_object(channel: str, raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PlatformUnavailable(
            f"{channel}: the platform's answer is not JSON", platform_code="bad_answer"
        ) from exc
    if not isinstance(answer, dict):
        raise PlatformUnavailable(
            f"{channel}: the platform's answer is not a JSON object",
            platform_code="bad_answer",
        )
    return answer


class SettingsReader:
    """Reads one channel's settings mapping, naming channel and field in errors."""

    def __init__(self, channel: str, settings: Mapping[str, Any], allowed: set[str]):
        self.channel = channel
        self.settings = settings
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise ChannelSettingsInvalid(
                f"channel {channel} settings: unknown fields {unknown}; "
                f"expected {', '.join(sorted(allowed))}",
                fields=unknown,
            )

    def text(self, field: str, *, default: str | None = None) -> str:
        value = self.settings.get(field, default)
        if not isinstance(value, str) or not value.strip():
            raise self._invalid(field, "a non-empty string", value)
        return value.strip()

    def optional_text(self, field: str) -> str | None:
        if self.settings.get(field) in (None, ""):
            return None
        return self.text(field)

    def integer(self, field: str, *, default: int | None = None) -> int:
        value = self.settings.get(field, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self._invalid(field, "a positive integer", value)
        return value

    def flag(self, field: str, *, default: bool) -> bool:
        value = self.settings.get(field, default)
        if not isinstance(value, bool):
            raise self._invalid(field, "true or false", value)
        return value

    def seconds(self, field: str, *, default: float) -> float:
        value = self.settings.get(field, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise self._invalid(field, "a positive number of seconds", value)
        return float(value)

    def base_url(self, default: str) -> str:
        value = self.text("base_url", default=default).rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise self._invalid("base_url", "an http(s) address", value)
        return value

    def _invalid(self, field: str, expected: str, value: object) -> Exception:
        shown = "missing" if value is None else f"got {type(value).__name__}"
        return ChannelSettingsInvalid(
            f"channel {self.channel} settings.{field}: expected {expected}, {shown}",
            field=field,
        )


def masked(secret: str) -> str:
    """Return the first four characters of ``secret`` and a mark for the rest."""
    return f"{secret[:4]}…" if len(secret) > 4 else "…"


def utf8_truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")
