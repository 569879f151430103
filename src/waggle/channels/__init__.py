"""Channels owns the delivery of notifications: WeCom application messages and
group robots, DingTalk and Feishu group robots, e-mail over SMTP and the in-app
inbox, with retries, dedup, the delivery log and each channel's settings.

The rules engine builds a :class:`Message` and calls :func:`deliver`; a channel
raises :class:`PlatformUnavailable` (retried) or :class:`PlatformRejected`
(not retried), and :func:`deliver` turns either into a logged outcome.
"""

from waggle.channels.base import Channel, DeliveryReceipt, Message
from waggle.channels.errors import (
    ChannelSettingsInvalid,
    MessageInvalid,
    PlatformRejected,
    PlatformUnavailable,
    UnknownChannel,
)
from waggle.channels.inbox import count_unread, list_inbox, mark_read
from waggle.channels.models import Delivery, DeliveryStatus, Notification
from waggle.channels.service import (
    CHANNEL_NAMES,
    DeliveryOutcome,
    RetryPolicy,
    build_channel,
    deliver,
    list_deliveries,
    parse_settings,
    read_channel_settings,
    save_channel_settings,
)

__all__ = [
    "CHANNEL_NAMES",
    "Channel",
    "ChannelSettingsInvalid",
    "Delivery",
    "DeliveryOutcome",
    "DeliveryReceipt",
    "DeliveryStatus",
    "Message",
    "MessageInvalid",
    "Notification",
    "PlatformRejected",
    "PlatformUnavailable",
    "RetryPolicy",
    "UnknownChannel",
    "build_channel",
    "count_unread",
    "deliver",
    "list_deliveries",
    "list_inbox",
    "mark_read",
    "parse_settings",
    "read_channel_settings",
    "save_channel_settings",
]
