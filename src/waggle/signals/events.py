"""Behaviour events as connectors produce them, before matching and storage.

A connector turns one raw record (a chat-archive message, an e-mail, a CDR
line, a GPS fix, ...) into :class:`EventDraft` objects. A draft names the
people and records it involves by *references*, strings of the form
``kind:value`` that the matcher resolves later:

===================  ==========================================================
reference            resolves to
===================  ==========================================================
``email:a@b.cn``     an employee or contact with that address (contacts also by
                     domain, to their account)
``phone:13812345678``  an employee or contact with that number (digits only)
``wecom:zhangsan``   the identity link (platform ``wecom``, id ``zhangsan``);
                     likewise ``dingtalk:``, ``feishu:``, ``wechat:``
``wecom_room:wrXyz``  a group chat; an identity link may tie it to an account or
                     an opportunity
``employee:E0001``   an employee by external id (``contact:``, ``account:``,
                     ``opportunity:`` likewise)
===================  ==========================================================

The sender and recipients decide who the actor (the employee) and the
counterpart (the contact) are, and so who spoke: a message sent by an employee
is the rep speaking, one sent by a contact is the customer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from waggle.signals.errors import MalformedPayload


class EventType(StrEnum):
    """What happened. Rules, scores and reports key on these names."""

    CHAT_MESSAGE = "chat_message"
    TRACKER_HIT = "tracker_hit"
    CALL = "call"
    EMAIL_SENT = "email_sent"
    EMAIL_RECEIVED = "email_received"
    MEETING_HELD = "meeting_held"
    MEETING_MINUTES = "meeting_minutes"
    FIELD_VISIT = "field_visit"
    MATERIAL_OPENED = "material_opened"
    QUOTE_SENT = "quote_sent"
    TRIAL_STARTED = "trial_started"
    STAGE_CHANGE = "stage_change"
    CRM_FIELD_UPDATE = "crm_field_update"
    TASK_COMPLETED = "task_completed"
    SERVICE_TICKET = "service_ticket"
    ACTIVITY_LOGGED = "activity_logged"


class Channel(StrEnum):
    """The channel an interaction went through, for coverage reports."""

    WECOM = "wecom"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    EMAIL = "email"
    PHONE = "phone"
    MEETING = "meeting"
    VISIT = "visit"
    MATERIAL = "material"
    CRM = "crm"
    MANUAL = "manual"


REFERENCE_KINDS = frozenset(
    {
        "email",
        "phone",
        "wecom",
        "wecom_room",
        "dingtalk",
        "dingtalk_room",
        "feishu",
        "feishu_room",
        "wechat",
        "employee",
        "contact",
        "account",
        "opportunity",
    }
)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as it arrived, before any parsing; kept verbatim.

    ``locator`` says where it came from for people reading the quarantine
    (``chats.jsonl line 17``, ``INBOX uid 4711``); it is not parsed.
    """

    payload: bytes
    locator: str = ""

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


@dataclass(frozen=True, slots=True)
class EventDraft:
    """One behaviour event as a connector understood it.

    ``source`` and ``source_id`` identify the event for idempotency: the same
    pair is stored once, however often it arrives. ``text`` is what trackers
    read (chat text, an e-mail body, meeting minutes); ``attributes`` holds the
    typed, per-type facts (``duration_seconds``, ``pages``, ``subject``...) and
    must be JSON-serialisable.
    """

    source: str
    source_id: str
    event_type: EventType
    occurred_at: dt.datetime
    channel: Channel
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    account_ref: str | None = None
    opportunity_ref: str | None = None
    thread_ref: str | None = None
    text: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    is_automatic: bool = True

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise MalformedPayload(
                f"event {self.source}:{self.source_id}: occurred_at must be "
                "timezone-aware"
            )
        if not self.source_id:
            raise MalformedPayload(f"event from {self.source}: source_id is empty")
        for reference in (self.sender, *self.recipients, self.account_ref):
            if reference is not None:
                check_reference(reference)


def check_reference(reference: str) -> str:
    """Return ``reference`` when it is ``kind:value`` with a known kind.

    Raises:
        MalformedPayload: the kind is unknown or the value empty.
    """
    kind, _, value = reference.partition(":")
    if kind not in REFERENCE_KINDS or not value:
        raise MalformedPayload(
            f"reference {reference!r}: expected kind:value with kind one of "
            f"{', '.join(sorted(REFERENCE_KINDS))}"
        )
    return reference


class Connector(Protocol):
    """Turns raw records of one source format into event drafts.

    ``parse`` must be pure (no database, no network) and deterministic: the
    same record always gives the same drafts, so a re-run batch is recognised
    by its source ids. Anything it cannot understand raises
    :class:`~waggle.signals.errors.MalformedPayload` (or another
    ``InvalidInput``) naming the field and what was expected; the pipeline
    quarantines the record with that reason.
    """

    name: str

    def parse(self, record: RawRecord) -> list[EventDraft]: ...


class PullSource(Protocol):
    """A source Waggle polls (an IMAP mailbox): records after a cursor.

    ``fetch`` returns the records that follow ``cursor`` (``None``: from the
    start) and the cursor to store once they are safely ingested, so a crash
    between the two re-reads records rather than skipping them (their source
    ids make the re-read harmless). At most ``limit`` records per call.

    Raises:
        UpstreamFailure: the source could not be reached or refused; the
            sync loop retries with backoff and records the error.
    """

    name: str

    def fetch(
        self, cursor: str | None, *, limit: int
    ) -> tuple[list[RawRecord], str | None]: ...


def millis_to_datetime(value: Any, *, field_name: str, record: str) -> dt.datetime:
    """Read an epoch timestamp in milliseconds (or seconds, told apart by size).

    Platforms document milliseconds, but exports in seconds are common; a value
    below 10^11 cannot be a millisecond time after 1973 and is read as seconds.

    Raises:
        MalformedPayload: the value is not a number or lies outside 2000-2100.
    """
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise MalformedPayload(
            f"{record}: {field_name} must be an epoch time, got {value!r}"
        ) from exc
    seconds = number if abs(number) < 1e11 else number / 1000
    if not 946_684_800 <= seconds < 4_102_444_800:
        raise MalformedPayload(
            f"{record}: {field_name}={value!r} lies outside 2000-2100"
        )
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


__all__ = [
    "Channel",
    "Connector",
    "EventDraft",
    "EventType",
    "PullSource",
    "RawRecord",
    "check_reference",
    "millis_to_datetime",
]
