"""E-mail: RFC 5322 messages (.eml, .mbox, IMAP) as sent and received events.

One message gives one :class:`~waggle.signals.events.EventDraft`. The rules a
reader of the stored events needs:

- **Direction.** ``email_sent`` when the From address is in one of the
  configured ``internal_domains`` (the domain itself or a subdomain of it),
  otherwise ``email_received``.
- **Identity.** ``source_id`` is the Message-ID without its angle brackets and
  with the domain part lower-cased (the local part is case-sensitive). A
  message without one gets ``sha256:<hex digest of the raw bytes>``, so the same
  file read twice is still recognised. An id longer than 250 characters is
  replaced by ``msgid-sha256:<digest of the id>``, in references too.
- **Time.** ``occurred_at`` comes from Date, in UTC (``-0000``, "zone unknown",
  is read as UTC). A missing or unparseable Date falls back to the date of the
  topmost Received header, which the last server added when it took the
  message; ``attributes["date_source"]`` says which one was used. With neither
  the message is malformed.
- **Threads.** ``thread_ref`` is ``email_thread:<root id>``, the root being the
  first References entry, else In-Reply-To, else the message's own id, so a
  whole thread shares one value.
- **Text.** The inline text/plain parts (else the text/html parts converted to
  text) are the body; trackers read it without quoted replies: lines starting
  with ``>`` and everything after an attribution line ("On ... wrote:",
  "... 写道：") or a quoted-header block ("-----Original Message-----",
  "-----原始邮件-----", "From:/Sent:", "发件人:/发送时间:") are dropped.
  ``attributes["body_length"]`` keeps the length of the full body.
- **Charsets.** gb2312 and gbk are decoded as gb18030, their superset (clients
  label gbk text as gb2312). A missing or wrong charset is guessed: UTF-8,
  then gb18030 when the result reads as Chinese, then charset-normalizer.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email.header
import email.utils
import hashlib
import logging
import mailbox
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import errors as email_errors
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import default as default_policy
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import charset_normalizer
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from waggle.core.errors import InvalidInput
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

logger = logging.getLogger(__name__)

SOURCE = "email"
NO_MESSAGE_ID_PREFIX = "sha256:"
LONG_MESSAGE_ID_PREFIX = "msgid-sha256:"
THREAD_PREFIX = "email_thread:"
MAX_MESSAGE_ID_LENGTH = 250
FILE_SUFFIXES = (".eml", ".mbox")

# Labels that mean "some GB encoding": gb18030 decodes all of them.
_GB_ALIASES = frozenset(
    {"gb2312", "gbk", "gb_2312-80", "x-gbk", "cp936", "ms936", "windows-936",
     "euc-cn", "x-euc-cn", "csgb2312", "chinese", "gb18030"}
)  # fmt: skip
_OTHER_ALIASES = {"ks_c_5601-1987": "cp949", "iso-8859-8-i": "iso-8859-8"}

_ANGLE_ID = re.compile(r"<([^<>]*)>")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_SUBJECT_PREFIX = re.compile(
    r"^\s*(re|fw|fwd|aw|wg|sv|回复|答复|回覆|转发|轉寄|转寄)\s*(?:\[\d+\])?\s*[:：]\s*",
    re.IGNORECASE,
)
_REPLY_PREFIXES = frozenset({"re", "aw", "sv", "回复", "答复", "回覆"})
_HAN = re.compile(r"[\u3400-\u9fff]")
_NOT_CHINESE_TEXT = re.compile(
    r"[^\x00-\x7f\u3000-\u303f\u3400-\u9fff\uff00-\uffef\u2010-\u2027\u00b7]"
)

_QUOTE_SEPARATOR = re.compile(
    r"^[-_=\s]{2,}(original message|原始邮件|邮件原件|原邮件|forwarded message|"
    r"转发邮件|转发的邮件|回复的原邮件)[-_=\s]{2,}$",
    re.IGNORECASE,
)
_QUOTE_FROM = re.compile(r"^\*?(from|发件人|寄件者|寄件人)\*?\s*[:：]", re.IGNORECASE)
_QUOTE_FIELD = re.compile(
    r"^\*?(sent|date|to|subject|cc|发送时间|时间|日期|收件人|主题|抄送|寄件日期|"
    r"收件者|副本)\*?\s*[:：]",
    re.IGNORECASE,
)
_ATTRIBUTION_EN = re.compile(r"^on\b.{0,400}\bwrote\s*:\s*$", re.IGNORECASE)
_ATTRIBUTION_ZH = re.compile(r"^.{0,400}(写道|寫道)\s*[:：]\s*$")
_RULE_LINE = re.compile(r"^[-_=*\s]+$")
# mbox writers quote body lines starting "From " as ">From " (mboxrd: one more
# ">" per level); reading undoes one level so the message is as it was sent.
_MBOX_FROM_QUOTE = re.compile(rb"(?m)^>(>*From )")


class EmailConfig(BaseModel):
    """Configuration of the e-mail connector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    internal_domains: tuple[str, ...]

    @field_validator("internal_domains")
    @classmethod
    def _normalise_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        domains = tuple(domain.strip().lower().removeprefix("@") for domain in value)
        if not domains:
            raise ValueError("expected at least one domain, e.g. ['acme.cn']")
        for domain in domains:
            if not domain or domain.startswith(".") or domain.endswith("."):
                raise ValueError(f"{domain!r} is not a domain name")
            if "@" in domain or any(character.isspace() for character in domain):
                raise ValueError(f"{domain!r} is not a domain name")
        return domains


class EmailConnector:
    """Turns one RFC 5322 message into one ``email_sent`` or ``email_received`` draft.

    Raises:
        InvalidInput: the configuration is not ``{"internal_domains": [...]}``.
    """

    name = SOURCE

    def __init__(self, config: Mapping[str, Any]) -> None:
        try:
            self.config = EmailConfig.model_validate(dict(config))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "config"
            raise InvalidInput(
                f"email connector config: {where}: {error['msg']}",
                connector=SOURCE,
                field=where,
            ) from exc

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the one draft the message in ``record`` describes.

        Raises:
            MalformedPayload: the payload is empty or not a message, or From,
                Date (and Received) cannot be read; the message names the field.
        """
        label = record.locator or f"e-mail {record.digest[:12]}"
        try:
            return [self._parse(record, label)]
        except InvalidInput:
            raise
        except (
            ValueError,
            LookupError,
            TypeError,
            AttributeError,
            AssertionError,
            RecursionError,
            email_errors.MessageError,
        ) as exc:
            # The stdlib parser is lenient, but hostile input has made its header
            # parser raise these; a record is then unreadable, not a crash.
            raise MalformedPayload(
                f"{label}: not a readable RFC 5322 message "
                f"({type(exc).__name__}: {exc})",
                locator=label,
            ) from exc

    def _parse(self, record: RawRecord, label: str) -> EventDraft:
        message = _parse_bytes(record.payload, label)
        sender, sender_name = _sender(message, label)
        message_id = _message_id(message)
        source_id = message_id or NO_MESSAGE_ID_PREFIX + record.digest
        occurred_at, date_source = _occurred_at(message, label)
        references = _references(message)
        in_reply_to = _in_reply_to(message)
        body = _read_body(message)
        full_text = body.text
        subject = decode_header_text(_raw_header(message, "Subject") or "")
        is_reply, is_forward = _reply_or_forward(
            subject, bool(references or in_reply_to)
        )

        return EventDraft(
            source=SOURCE,
            source_id=source_id,
            event_type=self._direction(sender),
            occurred_at=occurred_at,
            channel=Channel.EMAIL,
            sender=f"email:{sender}",
            recipients=tuple(f"email:{address}" for address in _recipients(message)),
            thread_ref=THREAD_PREFIX
            + (references[0] if references else in_reply_to or source_id),
            text=strip_quoted_text(full_text or "") or None,
            attributes={
                "subject": subject,
                "from_name": sender_name,
                "message_id": message_id,
                "in_reply_to": in_reply_to,
                "references": references,
                "cc": _addresses(message, "Cc"),
                "attachments": body.attachments,
                "has_html": body.has_html,
                "body_charset": body.charset,
                "body_length": len(full_text or ""),
                "is_reply": is_reply,
                "is_forward": is_forward,
                "date_source": date_source,
            },
        )

    def _direction(self, sender: str) -> EventType:
        domain = sender.rpartition("@")[2]
        for internal in self.config.internal_domains:
            if domain == internal or domain.endswith("." + internal):
                return EventType.EMAIL_SENT
        return EventType.EMAIL_RECEIVED


def read_records(
    path: Path, config: Mapping[str, Any] | None = None
) -> Iterator[RawRecord]:
    """Split ``path`` into messages: a .eml file, a .mbox file or a folder of them.

    A folder is read recursively, files in sorted order of their relative path;
    other files in it are ignored. mbox messages get their ``>From `` quoting
    undone (mboxrd). ``config`` is accepted for the registry's sake, unused.

    Raises:
        InvalidInput: the path does not exist or is not a .eml/.mbox file.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(
            (candidate for candidate in path.rglob("*") if _is_mail_file(candidate)),
            key=lambda candidate: candidate.relative_to(path).as_posix(),
        )
        return _read_folder(path, files)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file or folder", path=str(path))
    if not _is_mail_file(path):
        raise InvalidInput(
            f"{path}: expected a .eml or .mbox file or a folder of them",
            path=str(path),
        )
    return _read_file(path, label=path.name)


def _is_mail_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in FILE_SUFFIXES


def _read_folder(root: Path, files: list[Path]) -> Iterator[RawRecord]:
    for path in files:
        yield from _read_file(path, label=path.relative_to(root).as_posix())


def _read_file(path: Path, *, label: str) -> Iterator[RawRecord]:
    if path.suffix.lower() == ".eml":
        yield RawRecord(_read_bytes(path), locator=label)
        return
    yield from _read_mbox(path, label=label)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc})", path=str(path)) from exc


def _read_mbox(path: Path, *, label: str) -> Iterator[RawRecord]:
    try:
        box = mailbox.mbox(str(path), create=False)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc})", path=str(path)) from exc
    try:
        keys = sorted(box.keys())
        if not keys and path.stat().st_size > 0:
            raise InvalidInput(
                f"{path}: no message found; expected an mbox file whose messages "
                "start with 'From ' lines",
                path=str(path),
            )
        for number, key in enumerate(keys, start=1):
            payload = _MBOX_FROM_QUOTE.sub(rb"\1", box.get_bytes(key))
            yield RawRecord(payload, locator=f"{label} message {number}")
    finally:
        box.close()


# --- headers ---------------------------------------------------------------


def _parse_bytes(payload: bytes, label: str) -> EmailMessage:
    if not payload.strip():
        raise MalformedPayload(
            f"{label}: payload is empty; expected an RFC 5322 message", locator=label
        )
    message = BytesParser(policy=default_policy).parsebytes(payload)
    if not message.keys():
        raise MalformedPayload(
            f"{label}: no header found; expected an RFC 5322 message", locator=label
        )
    return message


def _raw_header(message: Message, name: str) -> str | None:
    """Return the first ``name`` header as written (unfolded), before any decoding."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return _FOLDING.sub("", str(value)).strip()
    return None


def _raw_headers(message: Message, name: str) -> list[str]:
    return [
        _FOLDING.sub("", str(value)).strip()
        for key, value in message.raw_items()
        if key.lower() == name.lower()
    ]


def _addresses(message: Message, name: str) -> list[str]:
    """Return the lower-cased addresses of every ``name`` header, in order."""
    found: list[str] = []
    for header in message.get_all(name) or []:
        for address in getattr(header, "addresses", ()):
            spec = address.addr_spec.strip().lower()
            local, at, domain = spec.rpartition("@")
            if at and local and domain and spec not in found:
                found.append(spec)
    return found


def _sender(message: Message, label: str) -> tuple[str, str]:
    header = message.get("From")
    if header is None:
        raise MalformedPayload(
            f"{label}: From header is missing; expected a sender address",
            locator=label,
            field="From",
        )
    for address in getattr(header, "addresses", ()):
        spec = address.addr_spec.strip().lower()
        local, at, domain = spec.rpartition("@")
        if at and local and domain:
            return spec, str(address.display_name)
    raise MalformedPayload(
        f"{label}: From {str(header)[:200]!r} holds no address; expected one like "
        "name@example.cn",
        locator=label,
        field="From",
    )


def _recipients(message: Message) -> list[str]:
    recipients: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        for address in _addresses(message, name):
            if address not in recipients:
                recipients.append(address)
    return recipients


def normalise_message_id(value: str) -> str | None:
    """Return a message id without angle brackets or spaces, domain lower-cased."""
    match = _ANGLE_ID.search(value)
    token = "".join((match[1] if match else value).split())
    if not token:
        return None
    local, at, domain = token.rpartition("@")
    if at and local:
        token = f"{local}@{domain.lower()}"
    if len(token) > MAX_MESSAGE_ID_LENGTH:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        return LONG_MESSAGE_ID_PREFIX + digest
    return token


def _message_id(message: Message) -> str | None:
    raw = _raw_header(message, "Message-ID")
    return normalise_message_id(raw) if raw else None


def _in_reply_to(message: Message) -> str | None:
    raw = _raw_header(message, "In-Reply-To")
    return normalise_message_id(raw) if raw else None


def _references(message: Message) -> list[str]:
    raw = " ".join(_raw_headers(message, "References"))
    tokens = _ANGLE_ID.findall(raw) or raw.split()
    references: list[str] = []
    for token in tokens:
        normalised = normalise_message_id(token)
        if normalised and normalised not in references:
            references.append(normalised)
    return references


def _occurred_at(message: Message, label: str) -> tuple[dt.datetime, str]:
    raw_date = _raw_header(message, "Date")
    parsed = parse_date(raw_date) if raw_date else None
    if parsed is not None:
        return parsed, "date"
    for received in _raw_headers(message, "Received"):
        parsed = parse_date(received.rpartition(";")[2])
        if parsed is not None:
            return parsed, "received"
    raise MalformedPayload(
        f"{label}: Date {raw_date!r} is missing or unreadable and no Received header "
        "carries a date; expected an RFC 5322 date like 'Tue, 5 Mar 2024 10:00:00 "
        "+0800'",
        locator=label,
        field="Date",
    )


def parse_date(value: str) -> dt.datetime | None:
    """Return an RFC 5322 date as aware UTC, or ``None`` if it is not one.

    A date without a usable zone (``-0000``) is read as UTC; years outside
    1980-2100 are treated as unreadable.
    """
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    if not 1980 <= parsed.year <= 2100:
        return None
    return parsed.astimezone(dt.UTC)


def decode_header_text(raw: str) -> str:
    """Decode a header's RFC 2047 encoded words (and raw 8-bit bytes) to text."""
    if _has_surrogates(raw):
        raw, _ = decode_bytes(raw.encode("ascii", "surrogateescape"), None)
    if "=?" not in raw:
        return raw
    try:
        parts = email.header.decode_header(raw)
    except (email_errors.HeaderParseError, ValueError, LookupError):
        return raw
    pieces = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            pieces.append(chunk)
        elif charset is None:
            pieces.append(chunk.decode("raw-unicode-escape", "replace"))
        else:
            pieces.append(decode_bytes(chunk, charset)[0])
    return "".join(pieces)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= character <= "\udcff" for character in text)


def _reply_or_forward(subject: str, has_parent: bool) -> tuple[bool, bool]:
    """Tell replies from forwards by the first subject prefix, then by headers.

    A forward often carries In-Reply-To/References too, so the subject's first
    prefix (Re:, 回复:, Fwd:, 转发:) wins; without one, a message with a parent
    is a reply.
    """
    match = _SUBJECT_PREFIX.match(subject)
    if match is None:
        return has_parent, False
    is_reply = match[1].lower() in _REPLY_PREFIXES
    return is_reply, not is_reply


# --- charsets --------------------------------------------------------------


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str]:
    """Decode ``data`` as ``charset``, guessing when it is missing or wrong.

    Returns the text and the codec actually used.
    """
    codec = _codec_for(charset)
    if codec is not None:
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            logger.debug("declared charset does not decode", extra={"charset": charset})
    return _guess_decode(data)


def _codec_for(charset: str | None) -> str | None:
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    if label in _GB_ALIASES:
        return "gb18030"
    label = _OTHER_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _guess_decode(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Short GBK text is often taken for Big5 by statistical detectors; for a
    # Chinese company's mail gb18030 is the likelier guess when it reads as
    # Chinese.
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        text = ""
    if text and _HAN.search(text) and not _NOT_CHINESE_TEXT.search(text):
        return text, "gb18030"
    best = charset_normalizer.from_bytes(data).best()
    if best is not None:
        return str(best), best.encoding
    return data.decode("utf-8", "replace"), "utf-8"


# --- body ------------------------------------------------------------------


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    charsets: list[str] = field(default_factory=list)
    html_charsets: list[str] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def has_html(self) -> bool:
        return bool(self.html)

    @property
    def text(self) -> str | None:
        if self.plain:
            return _tidy("\n".join(self.plain))
        if self.html:
            return _tidy("\n".join(html_to_text(html) for html in self.html))
        return None

    @property
    def charset(self) -> str | None:
        charsets = self.charsets if self.plain else self.html_charsets
        return charsets[0] if charsets else None


def _read_body(message: Message) -> _Body:
    body = _Body()
    _collect(message, body, depth=0)
    return body


def _collect(part: Message, body: _Body, *, depth: int) -> None:
    if part.get_content_maintype() == "message" and depth > 0:
        body.attachments.append(_attachment(part, default_name="message.eml"))
        return
    if part.is_multipart():
        payload = part.get_payload()
        for sub_part in payload if isinstance(payload, list) else []:
            if isinstance(sub_part, Message):
                _collect(sub_part, body, depth=depth + 1)
        return
    content_type = part.get_content_type()
    if _is_attachment(part) or content_type not in ("text/plain", "text/html"):
        body.attachments.append(_attachment(part, default_name=""))
        return
    text, codec = decode_bytes(_payload_bytes(part), part.get_content_charset())
    if content_type == "text/plain":
        body.plain.append(text)
        body.charsets.append(codec)
    else:
        body.html.append(text)
        body.html_charsets.append(codec)


def _is_attachment(part: Message) -> bool:
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or part.get_filename() is not None


def _payload_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _attachment(part: Message, *, default_name: str) -> dict[str, Any]:
    name = part.get_filename() or default_name
    size: int | None = len(_payload_bytes(part))
    if part.get_content_maintype() == "message":
        size = _serialised_size(part)
    return {
        "name": decode_header_text(str(name)),
        "size": size,
        "content_type": part.get_content_type(),
    }


def _serialised_size(part: Message) -> int | None:
    """Return the size of an attached message, ``None`` if it cannot be rebuilt.

    The parser keeps no raw offsets, so the size is that of the message written
    out again; a damaged one (undecodable 8-bit bytes) cannot be.
    """
    try:
        return len(part.as_bytes())
    except (UnicodeError, LookupError, ValueError, TypeError):
        return None


class _HtmlText(HTMLParser):
    """Collects the visible text of an HTML body, marking blockquotes with ``> ``."""

    BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
         "blockquote", "pre", "hr", "ul", "ol", "section", "article", "header",
         "footer", "dt", "dd"}
    )  # fmt: skip
    HIDDEN = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._line_depth = 0
        self._quote_depth = 0
        self._hidden = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, opening=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if not self._line:
            self._line_depth = self._quote_depth
        if self._pre:
            for index, piece in enumerate(data.split("\n")):
                if index:
                    self._break()
                    self._line_depth = self._quote_depth
                self._line.append(piece)
            return
        self._line.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        self._break()
        return "\n".join(self.lines)

    def _tag(self, tag: str, *, opening: bool) -> None:
        step = 1 if opening else -1
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden + step)
            return
        if tag in self.BLOCKS:
            self._break()
        if tag == "blockquote":
            self._quote_depth = max(0, self._quote_depth + step)
        elif tag == "pre":
            self._pre = max(0, self._pre + step)

    def _break(self) -> None:
        line = "".join(self._line).strip()
        self._line = []
        if line or (self.lines and self.lines[-1]):
            self.lines.append("> " * self._line_depth + line if line else "")


def html_to_text(html: str) -> str:
    """Return the visible text of ``html``, one line per block, quotes marked."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return parser.text()


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines).replace("\xa0", " ")).strip()


def strip_quoted_text(text: str) -> str:
    """Return ``text`` without quoted replies: what the sender wrote themselves.

    Lines starting with ``>`` are dropped; an attribution line or a quoted
    header block (Outlook, Foxmail, Gmail, in Chinese and English) ends the
    text. Rule lines left dangling at the end are trimmed.
    """
    lines = text.split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _starts_quote(lines, index):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    while kept and (not kept[-1].strip() or _RULE_LINE.match(kept[-1])):
        kept.pop()
    return "\n".join(kept).strip()


def _starts_quote(lines: list[str], index: int) -> bool:
    line = lines[index].strip().replace("\xa0", " ")
    if _QUOTE_SEPARATOR.match(line) or _ATTRIBUTION_ZH.match(line):
        return True
    if _ATTRIBUTION_EN.match(line):
        return True
    # Gmail wraps a long attribution: "On Tue, ... Zhang San <z@x.cn>\nwrote:".
    if (
        line.lower().startswith("on ")
        and index + 1 < len(lines)
        and _ATTRIBUTION_EN.match(f"{line} {lines[index + 1].strip()}")
    ):
        return True
    if _QUOTE_FROM.match(line):
        following = (candidate.strip() for candidate in lines[index + 1 : index + 5])
        return any(_QUOTE_FIELD.match(candidate) for candidate in following)
    return False


__all__ = [
    "EmailConfig",
    "EmailConnector",
    "decode_bytes",
    "decode_header_text",
    "html_to_text",
    "normalise_message_id",
    "parse_date",
    "read_records",
    "strip_quoted_text",
]
