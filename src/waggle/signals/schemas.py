"""API shapes of the signals context."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class BatchReportRead(BaseModel):
    batch_id: int
    connector: str
    received: int
    accepted: int
    quarantined: int
    duplicates: int
    events_stored: int
    reconciles: bool


class BatchRead(_Read):
    id: int
    connector: str
    source_name: str | None
    label: str
    status: str
    received: int
    accepted: int
    quarantined: int
    duplicates: int
    events_stored: int
    started_by: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


class PushRecords(BaseModel):
    """Records pushed by another system: JSON values, or text for XML and CSV."""

    records: list[Any] = Field(min_length=1, max_length=5000)
    source_name: str | None = None


class EventRead(_Read):
    id: int
    source: str
    source_id: str
    event_type: str
    channel: str
    occurred_at: dt.datetime
    actor_id: int | None
    contact_id: int | None
    account_id: int | None
    opportunity_id: int | None
    speaker: str | None
    is_automatic: bool
    thread_ref: str | None
    text: str | None
    attributes: dict[str, Any]
    match_status: str
    match_note: str | None
    parent_id: int | None
    raw_id: int | None


class EventPage(BaseModel):
    items: list[EventRead]
    next_before_id: int | None


class QuarantineRead(_Read):
    id: int
    connector: str
    source_name: str | None
    raw_id: int
    batch_id: int | None
    reason_code: str
    reason: str
    status: str
    attempts: int
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class ReplayRequest(BaseModel):
    ids: list[int] | None = Field(
        default=None, description="quarantine ids; none: every open entry"
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="settings that override the source's"
    )


class DiscardRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=300)


class SourceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.\-]+$")
    connector: str
    config: dict[str, Any] = Field(default_factory=dict)


class SourceRead(_Read):
    id: int
    name: str
    connector: str
    is_enabled: bool
    cursor: str | None
    last_attempt_at: dt.datetime | None
    last_success_at: dt.datetime | None
    newest_event_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    error_count: int
    consecutive_failures: int
    last_error: str | None
    last_error_at: dt.datetime | None
    received_total: int
    quarantined_total: int


class ConnectorStatusRead(_Read):
    connector: str
    sources: list[str]
    last_success_at: dt.datetime | None
    last_batch_at: dt.datetime | None
    lag_seconds: int | None
    received: int
    quarantined_open: int
    error_count: int
    last_error: str | None
    last_error_at: dt.datetime | None


class LinkCreate(BaseModel):
    platform: str
    external_id: str = Field(min_length=1, max_length=200)
    employee_id: int | None = None
    contact_id: int | None = None
    account_id: int | None = None
    opportunity_id: int | None = None


class LinkRead(_Read):
    id: int
    platform: str
    external_id: str
    employee_id: int | None
    contact_id: int | None
    account_id: int | None
    opportunity_id: int | None


class RematchRead(BaseModel):
    examined: int
    improved: int
    still_unmatched: int
    still_partial: int


class CoverageRowRead(BaseModel):
    employee_id: int
    week: str
    automatic: dict[str, int]
    manual: dict[str, int]
    automatic_total: int
    manual_total: int
    captured_share: float | None


class HeatMapRead(BaseModel):
    employee_id: int
    timezone: str
    weekdays: list[str]
    counts: list[list[int]] = Field(description="7 rows (Monday first) by 24 hours")
    total: int
