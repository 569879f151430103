"""Replay protection for platform callbacks: a timestamp window and a nonce cache.

A callback is admitted once: its timestamp must lie within ``window`` of
Waggle's clock, and its (timestamp, nonce) pair must not have been admitted
before. Both values are covered by the request signature, so an attacker who
replays a captured request cannot change them; the guard is therefore consulted
only after the signature checks out, and forged requests never fill the cache.

A remembered pair is kept until its timestamp leaves the window; after that
the window check alone rejects it. The in-memory store serves one process; a
scaled-out deployment passes a store shared by all API processes.

Platforms retry unanswered callbacks (WeCom three times within seconds; Feishu
after 15 s, 5 min, 1 h and 6 h). A retry of a request that was admitted is
refused as ``ReplayedRequest``; an endpoint should answer that code as success,
because the first delivery was accepted, and call :meth:`ReplayGuard.release`
when it could not process a request so that the retry gets in.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import re
import threading
from typing import Literal, Protocol

from waggle.core import clock
from waggle.signals.errors import ReplayedRequest, StaleTimestamp

logger = logging.getLogger(__name__)

# TODO(#3): confirm whether Feishu and DingTalk re-sign retries with a fresh
#   timestamp; if a retry keeps the original one, deliveries retried after
#   the window (Feishu's 1 h and 6 h) are refused as stale, and the connector
#   must then pull the missed events or widen the window for that platform.
DEFAULT_WINDOW = dt.timedelta(minutes=5)
_DIGITS = re.compile(r"[0-9]{1,16}")

TimestampUnit = Literal["seconds", "milliseconds"]


class NonceStore(Protocol):
    """Where admitted (timestamp, nonce) keys are remembered until they expire."""

    def add(self, key: str, *, expires_at: dt.datetime) -> bool:
        """Remember ``key``; return False when it is already remembered."""

    def discard(self, key: str) -> None:
        """Forget ``key`` (a request that could not be processed may come again)."""


class MemoryNonceStore:
    """A bounded in-process nonce store; thread-safe.

    When full of unexpired keys it forgets the ones closest to expiry first and
    logs a warning: replay protection then weakens for those, which needs more
    genuine (signed) requests inside one window than ``max_entries``.
    """

    def __init__(self, *, max_entries: int = 100_000):
        self._max_entries = max_entries
        self._expiry: dict[str, dt.datetime] = {}
        self._queue: list[tuple[dt.datetime, str]] = []
        self._lock = threading.Lock()

    def add(self, key: str, *, expires_at: dt.datetime) -> bool:
        """Remember ``key`` until ``expires_at``; False when already remembered."""
        now = clock.now()
        with self._lock:
            self._forget_expired(now)
            known = self._expiry.get(key)
            if known is not None and known > now:
                return False
            if len(self._expiry) >= self._max_entries:
                self._evict_one()
            self._expiry[key] = expires_at
            heapq.heappush(self._queue, (expires_at, key))
            return True

    def discard(self, key: str) -> None:
        """Forget ``key``; its queue entry is dropped lazily."""
        with self._lock:
            self._expiry.pop(key, None)

    def __len__(self) -> int:
        return len(self._expiry)

    def _forget_expired(self, now: dt.datetime) -> None:
        while self._queue and self._queue[0][0] <= now:
            expires_at, key = heapq.heappop(self._queue)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def _evict_one(self) -> None:
        while self._queue:
            expires_at, key = heapq.heappop(self._queue)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]
                logger.warning(
                    "nonce cache full; forgot the oldest nonce",
                    extra={"reason": "nonce_cache_full", "size": self._max_entries},
                )
                return


class ReplayGuard:
    """Admit each signed callback once, and only while its timestamp is fresh."""

    def __init__(
        self,
        *,
        platform: str,
        timestamp_unit: TimestampUnit = "seconds",
        window: dt.timedelta = DEFAULT_WINDOW,
        store: NonceStore | None = None,
    ):
        self.platform = platform
        self.timestamp_unit = timestamp_unit
        self.window = window
        self.store: NonceStore = store if store is not None else MemoryNonceStore()

    def admit(self, *, timestamp: str, nonce: str) -> None:
        """Accept a request's timestamp and nonce, remembering them.

        Raises:
            StaleTimestamp: the timestamp is not digits or lies outside the window.
            ReplayedRequest: the same timestamp and nonce were admitted before.
        """
        sent_at = self.parse_timestamp(timestamp)
        skew = abs(clock.now() - sent_at)
        if skew > self.window:
            raise StaleTimestamp(
                f"{self.platform} callback: timestamp {timestamp} is "
                f"{int(skew.total_seconds())} s away from now; expected at most "
                f"{int(self.window.total_seconds())} s",
                platform=self.platform,
            )
        if not nonce:
            raise ReplayedRequest(
                f"{self.platform} callback: nonce is empty; expected the random "
                "string the platform sends with every request",
                platform=self.platform,
            )
        if not self.store.add(
            self._key(timestamp, nonce), expires_at=sent_at + self.window
        ):
            raise ReplayedRequest(
                f"{self.platform} callback: timestamp {timestamp} with this nonce "
                "was already accepted; expected each request once",
                platform=self.platform,
            )

    def release(self, *, timestamp: str, nonce: str) -> None:
        """Forget an admitted request so that the platform's retry is accepted."""
        self.store.discard(self._key(timestamp, nonce))

    def parse_timestamp(self, timestamp: str) -> dt.datetime:
        """Return the instant a platform timestamp names.

        Raises:
            StaleTimestamp: ``timestamp`` is not 1 to 16 ASCII digits.
        """
        if not _DIGITS.fullmatch(timestamp):
            raise StaleTimestamp(
                f"{self.platform} callback: timestamp {timestamp[:20]!r} is not a "
                f"number; expected Unix time in {self.timestamp_unit}",
                platform=self.platform,
            )
        value = int(timestamp)
        seconds = value / 1000 if self.timestamp_unit == "milliseconds" else value
        try:
            return dt.datetime.fromtimestamp(seconds, clock.UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise StaleTimestamp(
                f"{self.platform} callback: timestamp {timestamp} is out of range; "
                f"expected Unix time in {self.timestamp_unit}",
                platform=self.platform,
            ) from exc

    def _key(self, timestamp: str, nonce: str) -> str:
        return f"{self.platform}\x1f{timestamp}\x1f{nonce}"
