"""Delivering notifications: channel settings, retries, dedup and the delivery log.

:func:`deliver` is what the rules engine calls. It checks the policy, claims a
delivery row (so the same ``dedup_key`` on the same channel goes out at most
once, even with several workers), calls the channel outside any database
transaction when given a session factory, retries transient failures with
exponential backoff, and records the outcome with an audit row. Platform
failures come back as a failed :class:`DeliveryOutcome`, not as an exception,
so the log row survives whatever the caller does next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from waggle.channels.base import Channel, DeliveryReceipt, Message
from waggle.channels.dingtalk import DingTalkRobotChannel, DingTalkRobotSettings
from waggle.channels.email import EmailChannel, SmtpSettings
from waggle.channels.errors import ChannelSettingsInvalid, UnknownChannel
from waggle.channels.feishu import FeishuBotChannel, FeishuBotSettings
from waggle.channels.inbox import InboxChannel, SessionSource, unit_of_work
from waggle.channels.models import ChannelSetting, Delivery, DeliveryStatus
from waggle.channels.wecom import (
    TokenCache,
    WeComAppChannel,
    WeComAppSettings,
    WeComRobotChannel,
    WeComRobotSettings,
)
from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import InvalidInput, UpstreamFailure, WaggleError
from waggle.governance import authorize, record_audit

logger = logging.getLogger(__name__)

NOTIFICATIONS = "notifications"
CHANNEL_SETTINGS = "channel_settings"
CHANNEL_NAMES = (
    "wecom_app",
    "wecom_robot",
    "dingtalk_robot",
    "feishu_bot",
    "email",
    "inbox",
)
SECRET_FIELDS = frozenset(
    {"corp_secret", "secret", "password", "key", "access_token", "hook_token"}
)
# A pending claim older than this belongs to a worker that died mid-send.
ABANDONED_CLAIM = dt.timedelta(minutes=10)

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried."""

    max_attempts: int = 3
    base_delay_seconds: float = 1.0
    factor: float = 2.0
    max_delay_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        """Return the pause after failed attempt number ``attempt`` (from 1)."""
        pause = self.base_delay_seconds * self.factor ** (attempt - 1)
        return float(min(pause, self.max_delay_seconds))


@dataclass(frozen=True)
class DeliveryOutcome:
    """What became of one delivery; ``is_duplicate`` marks an earlier one returned."""

    delivery_id: int
    channel: str
    recipient: str
    status: str
    attempts: int
    platform_message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    is_duplicate: bool = False

    @property
    def is_sent(self) -> bool:
        return self.status == DeliveryStatus.SENT


def parse_settings(name: str, settings: Mapping[str, Any]) -> object:
    """Validate the settings of channel ``name`` and return them typed.

    Raises:
        UnknownChannel: ``name`` is not a channel.
        ChannelSettingsInvalid: a field is missing, unknown or mistyped.
    """
    parsers: dict[str, Callable[[Mapping[str, Any]], object]] = {
        "wecom_app": WeComAppSettings.parse,
        "wecom_robot": WeComRobotSettings.parse,
        "dingtalk_robot": DingTalkRobotSettings.parse,
        "feishu_bot": FeishuBotSettings.parse,
        "email": SmtpSettings.parse,
        "inbox": _no_settings,
    }
    if name not in parsers:
        raise UnknownChannel(
            f"channel {name!r} does not exist; "
            f"expected one of {', '.join(CHANNEL_NAMES)}"
        )
    if not isinstance(settings, Mapping):
        raise ChannelSettingsInvalid(f"channel {name} settings: expected a mapping")
    return parsers[name](settings)


def _no_settings(settings: Mapping[str, Any]) -> None:
    if settings:
        raise ChannelSettingsInvalid(
            f"channel inbox settings: expected none, got {sorted(settings)}"
        )


def build_channel(
    name: str,
    settings: Mapping[str, Any],
    *,
    sessions: SessionSource | None = None,
    tokens: TokenCache | None = None,
) -> Channel:
    """Return the channel ``name`` configured with ``settings``.

    ``sessions`` is needed by the inbox (it writes rows); ``tokens`` replaces
    the process-wide WeCom token cache.

    Raises:
        UnknownChannel, ChannelSettingsInvalid: as for :func:`parse_settings`.
    """
    parsed = parse_settings(name, settings)
    if isinstance(parsed, WeComAppSettings):
        return WeComAppChannel(parsed, tokens=tokens)
    if isinstance(parsed, WeComRobotSettings):
        return WeComRobotChannel(parsed)
    if isinstance(parsed, DingTalkRobotSettings):
        return DingTalkRobotChannel(parsed)
    if isinstance(parsed, FeishuBotSettings):
        return FeishuBotChannel(parsed)
    if isinstance(parsed, SmtpSettings):
        return EmailChannel(parsed)
    if sessions is None:
        raise ChannelSettingsInvalid("channel inbox: expected a session to write to")
    return InboxChannel(sessions)


def deliver(
    sessions: SessionSource,
    actor: Actor,
    message: Message,
    *,
    channel: str | Channel,
    settings: Mapping[str, Any] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Sleep = time.sleep,
) -> DeliveryOutcome:
    """Send ``message`` on ``channel`` at most once per ``dedup_key`` and log it.

    ``channel`` is a channel name (configured from ``settings`` or, without
    them, from the saved settings) or a ready :class:`Channel`. With a session
    factory each step commits on its own and the platform is called between
    them; with a session everything joins the caller's transaction.

    Raises:
        PolicyDenied: the actor may not send notifications.
        UnknownChannel, ChannelSettingsInvalid: the channel cannot be built.
    """
    with unit_of_work(sessions) as session:
        authorize(session, actor, "create", NOTIFICATIONS)
        client = _client(session, channel, settings, sessions)
        message = _with_address(session, client.name, message)
        row, earlier = _claim(session, client, message)
        delivery_id = row.id
    if earlier is not None:
        logger.info(
            "notification already delivered",
            extra={"delivery_id": delivery_id, "channel": client.name},
        )
        return earlier

    receipt, attempts, failure = _send_with_retry(client, message, retry, sleep)

    with unit_of_work(sessions) as session:
        return _finish(
            session,
            actor,
            delivery_id,
            receipt=receipt,
            attempts=attempts,
            failure=failure,
        )


def _client(
    session: Session,
    channel: str | Channel,
    settings: Mapping[str, Any] | None,
    sessions: SessionSource,
) -> Channel:
    if not isinstance(channel, str):
        return channel
    if settings is None:
        settings = {} if channel == "inbox" else stored_settings(session, channel)
    return build_channel(channel, settings, sessions=sessions)


def _with_address(session: Session, channel: str, message: Message) -> Message:
    # E-mail is the one address Waggle's org chart holds; chat userids and
    # robot keys come with the message or the channel settings.
    if channel != "email" or message.address or message.employee_id is None:
        return message
    from waggle.identity import Employee

    email = session.scalar(
        select(Employee.email).where(Employee.id == message.employee_id)
    )
    return dataclasses.replace(message, address=email) if email else message


def _claim(
    session: Session, client: Channel, message: Message
) -> tuple[Delivery, DeliveryOutcome | None]:
    """Return the row this delivery writes to, or an earlier one's outcome."""
    existing = _existing(session, client.name, message.dedup_key)
    if existing is not None:
        if _is_live(existing):
            return existing, _outcome(existing, is_duplicate=True)
        existing.status = DeliveryStatus.PENDING
        existing.claimed_at = now()
        existing.error_code = existing.error = None
        session.flush()
        return existing, None
    row = Delivery(
        channel=client.name,
        recipient=client.recipient_label(message)[:300],
        employee_id=message.employee_id,
        dedup_key=message.dedup_key,
        source=message.source,
        title=message.title[:300],
        status=DeliveryStatus.PENDING,
        attempts=0,
        claimed_at=now(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another worker claimed the same key between our look and our insert.
        winner = _existing(session, client.name, message.dedup_key)
        if winner is None:
            raise
        return winner, _outcome(winner, is_duplicate=True)
    return row, None


def _existing(session: Session, channel: str, dedup_key: str | None) -> Delivery | None:
    if dedup_key is None:
        return None
    return session.scalar(
        select(Delivery).where(
            Delivery.channel == channel, Delivery.dedup_key == dedup_key
        )
    )


def _is_live(row: Delivery) -> bool:
    if row.status == DeliveryStatus.SENT:
        return True
    return row.status == DeliveryStatus.PENDING and (
        now() - row.claimed_at < ABANDONED_CLAIM
    )


def _send_with_retry(
    client: Channel, message: Message, retry: RetryPolicy, sleep: Sleep
) -> tuple[DeliveryReceipt | None, int, WaggleError | None]:
    attempt = 0
    while True:
        attempt += 1
        try:
            return client.send(message), attempt, None
        except UpstreamFailure as exc:
            if attempt >= retry.max_attempts:
                return None, attempt, exc
            logger.debug(
                "notification retry scheduled",
                extra={"channel": client.name, "attempt": attempt, "code": exc.code},
            )
            sleep(retry.delay(attempt))
        except InvalidInput as exc:
            return None, attempt, exc


def _finish(
    session: Session,
    actor: Actor,
    delivery_id: int,
    *,
    receipt: DeliveryReceipt | None,
    attempts: int,
    failure: WaggleError | None,
) -> DeliveryOutcome:
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise InvalidInput(f"delivery {delivery_id} vanished while it was sent")
    row.attempts += attempts
    row.finished_at = now()
    if receipt is not None:
        row.status = DeliveryStatus.SENT
        row.platform_message_id = receipt.platform_message_id
        row.recipient = receipt.recipient[:300] or row.recipient
    else:
        row.status = DeliveryStatus.FAILED
        row.error_code = _failure_code(failure)
        row.error = failure.message[:500] if failure else None
    session.flush()
    record_audit(
        session,
        actor,
        action="create",
        resource=NOTIFICATIONS,
        record_ids=[delivery_id],
        result="ok" if receipt is not None else "failed",
        detail=f"{row.channel} {row.status} attempts={row.attempts}",
    )
    _log_outcome(row)
    return _outcome(row)


def _failure_code(failure: WaggleError | None) -> str | None:
    if failure is None:
        return None
    return str(failure.details.get("platform_code") or failure.code)[:40]


def _log_outcome(row: Delivery) -> None:
    extra = {
        "delivery_id": row.id,
        "channel": row.channel,
        "attempts": row.attempts,
        "source": row.source,
    }
    if row.status == DeliveryStatus.SENT:
        logger.info("notification delivered", extra=extra)
    else:
        logger.warning(
            "notification delivery failed", extra={**extra, "reason": row.error_code}
        )


def _outcome(row: Delivery, *, is_duplicate: bool = False) -> DeliveryOutcome:
    return DeliveryOutcome(
        delivery_id=row.id,
        channel=row.channel,
        recipient=row.recipient,
        status=row.status,
        attempts=row.attempts,
        platform_message_id=row.platform_message_id,
        error_code=row.error_code,
        error=row.error,
        is_duplicate=is_duplicate,
    )


def list_deliveries(
    session: Session,
    actor: Actor,
    *,
    channel: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """Return the newest delivery log rows, optionally of one channel or status.

    Raises:
        PolicyDenied: the actor may not read channel settings.
    """
    authorize(session, actor, "read", CHANNEL_SETTINGS)
    statement = select(Delivery).order_by(Delivery.id.desc())
    if channel is not None:
        statement = statement.where(Delivery.channel == channel)
    if status is not None:
        statement = statement.where(Delivery.status == status)
    rows = list(session.scalars(statement.limit(max(1, min(limit, 500)))))
    record_audit(
        session,
        actor,
        action="read",
        resource=CHANNEL_SETTINGS,
        record_ids=[row.id for row in rows],
        detail="deliveries",
    )
    return rows


def save_channel_settings(
    session: Session, actor: Actor, channel: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate and store the settings of ``channel``; return them masked.

    Raises:
        PolicyDenied: the actor may not change channel settings.
        UnknownChannel, ChannelSettingsInvalid: the settings do not validate.
    """
    row = session.scalar(
        select(ChannelSetting).where(ChannelSetting.channel == channel)
    )
    action = "create" if row is None else "update"
    authorize(session, actor, action, CHANNEL_SETTINGS)
    parse_settings(channel, settings)
    if row is None:
        row = ChannelSetting(channel=channel, updated_by=actor.username)
        session.add(row)
    row.settings = dict(settings)
    row.updated_by = actor.username
    row.updated_at = now()
    session.flush()
    record_audit(
        session,
        actor,
        action=action,
        resource=CHANNEL_SETTINGS,
        record_ids=[row.id],
        detail=f"{channel}: {','.join(sorted(settings))}",
    )
    return mask_settings(row.settings)


def read_channel_settings(
    session: Session, actor: Actor, channel: str
) -> dict[str, Any]:
    """Return the saved settings of ``channel`` with every secret masked.

    Raises:
        PolicyDenied: the actor may not read channel settings.
        ChannelSettingsInvalid: nothing is saved for ``channel``.
    """
    authorize(session, actor, "read", CHANNEL_SETTINGS)
    settings = mask_settings(stored_settings(session, channel))
    record_audit(
        session, actor, action="read", resource=CHANNEL_SETTINGS, detail=channel
    )
    return settings


def stored_settings(session: Session, channel: str) -> dict[str, Any]:
    """Return the saved settings of ``channel`` (secrets in clear; internal use).

    Raises:
        ChannelSettingsInvalid: nothing is saved for ``channel``.
    """
    row = session.scalar(
        select(ChannelSetting).where(ChannelSetting.channel == channel)
    )
    if row is None:
        raise ChannelSettingsInvalid(
            f"channel {channel}: no settings saved; pass settings or save them first"
        )
    return dict(row.settings)


def mask_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``settings`` with the value of every secret field replaced."""
    return {
        key: "******" if key in SECRET_FIELDS and value else value
        for key, value in settings.items()
    }
