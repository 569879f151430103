"""E-mail over SMTP: one multipart (plain text and HTML) message per recipient.

The subject and display names go out as RFC 2047 encoded words, so Chinese
text survives servers that speak only ASCII; the bodies are UTF-8. STARTTLS
and login are optional, as the company's relay requires.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from waggle.channels.base import (
    DEFAULT_TIMEOUT_SECONDS,
    DeliveryReceipt,
    Message,
    SettingsReader,
)
from waggle.channels.errors import (
    ChannelSettingsInvalid,
    MessageInvalid,
    PlatformRejected,
    PlatformUnavailable,
)
from waggle.core.clock import now


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to hand mail to the company's SMTP relay."""

    host: str
    from_address: str
    port: int = 587
    use_starttls: bool = True
    username: str | None = None
    password: str | None = None
    from_name: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> SmtpSettings:
        """Validate a settings mapping.

        Raises:
            ChannelSettingsInvalid: a field is missing, unknown or mistyped, or
                only one of username and password is given.
        """
        fields = {
            "host",
            "port",
            "use_starttls",
            "username",
            "password",
            "from_address",
            "from_name",
            "timeout_seconds",
        }
        reader = SettingsReader("email", settings, fields)
        use_starttls = reader.flag("use_starttls", default=True)
        parsed = cls(
            host=reader.text("host"),
            port=reader.integer("port", default=587 if use_starttls else 25),
            use_starttls=use_starttls,
            username=reader.optional_text("username"),
            password=reader.optional_text("password"),
            from_address=_address(reader.text("from_address"), "from_address"),
            from_name=reader.optional_text("from_name"),
            timeout_seconds=reader.seconds(
                "timeout_seconds", default=DEFAULT_TIMEOUT_SECONDS
            ),
        )
        if (parsed.username is None) != (parsed.password is None):
            raise ChannelSettingsInvalid(
                "channel email settings: expected both username and password, "
                "or neither",
                field="username",
            )
        for field in ("username", "password"):
            # smtplib sends AUTH credentials as ASCII and fails on anything else.
            if not (getattr(parsed, field) or "").isascii():
                raise ChannelSettingsInvalid(
                    f"channel email settings.{field}: expected ASCII characters only",
                    field=field,
                )
        return parsed


def _address(value: str, field: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise ChannelSettingsInvalid(
            f"channel email settings.{field}: expected an e-mail address, "
            f"got {value!r}",
            field=field,
        )
    return value


class EmailChannel:
    """Sends each message as one e-mail to ``message.address``."""

    name = "email"

    def __init__(self, settings: SmtpSettings):
        self.settings = settings

    def recipient_label(self, message: Message) -> str:
        return message.address or ""

    def send(self, message: Message) -> DeliveryReceipt:
        """Hand one e-mail to the relay; the receipt carries its Message-ID.

        Raises:
            MessageInvalid: the message has no e-mail address.
            PlatformUnavailable: no connection, a timeout or a 4xx reply.
            PlatformRejected: a 5xx reply (a refused recipient, failed login).
        """
        email = self.build(message)
        try:
            with smtplib.SMTP(
                self.settings.host,
                self.settings.port,
                timeout=self.settings.timeout_seconds,
            ) as smtp:
                self._session(smtp, email)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _reply_error(code, reply) from exc
        except smtplib.SMTPResponseException as exc:
            raise _reply_error(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise PlatformUnavailable(
                f"email: the SMTP relay failed ({exc})", platform_code="network"
            ) from exc
        return DeliveryReceipt(self.name, message.address or "", email["Message-ID"])

    def build(self, message: Message) -> EmailMessage:
        """Return the multipart/alternative e-mail for ``message``."""
        if not message.address:
            raise MessageInvalid("email message.address: expected an e-mail address")
        _address(message.address, "address")
        email = EmailMessage()
        email["Subject"] = message.title
        email["From"] = Address(
            display_name=self.settings.from_name or "",
            addr_spec=self.settings.from_address,
        )
        email["To"] = message.address
        email["Date"] = format_datetime(now())
        domain = self.settings.from_address.rpartition("@")[2]
        email["Message-ID"] = make_msgid(domain=domain)
        email["Content-Language"] = message.locale
        email.set_content(message.plain_text() + "\n", charset="utf-8")
        email.add_alternative(_html(message), subtype="html", charset="utf-8")
        return email

    def _session(self, smtp: smtplib.SMTP, email: EmailMessage) -> None:
        smtp.ehlo()
        if self.settings.use_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if self.settings.username and self.settings.password:
            smtp.login(self.settings.username, self.settings.password)
        smtp.send_message(email)


def _html(message: Message) -> str:
    paragraphs = "".join(
        f"<p>{html.escape(part).replace(chr(10), '<br>')}</p>"
        for part in message.body.split("\n\n")
        if part.strip()
    )
    link = ""
    if message.link_url:
        link = (
            f'<p><a href="{html.escape(message.link_url, quote=True)}">'
            f"{html.escape(message.details_label)}</a></p>"
        )
    return (
        f'<!DOCTYPE html><html lang="{message.locale}"><head><meta charset="utf-8">'
        f"<title>{html.escape(message.title)}</title></head><body>"
        f"<h1>{html.escape(message.title)}</h1>{paragraphs}{link}</body></html>\n"
    )


def _reply_error(code: int, reply: bytes | str) -> Exception:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    summary = f"email: the SMTP relay answered {code} ({text})"
    if 400 <= code < 500:
        return PlatformUnavailable(summary, platform_code=str(code))
    return PlatformRejected(summary, platform_code=str(code))
