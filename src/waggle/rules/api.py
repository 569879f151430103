"""HTTP routes of the rules context: rules, validation, backtests, firings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from waggle.apikit import ActorDep, SessionDep
from waggle.core.clock import now
from waggle.rules import service
from waggle.rules.errors import RuleInvalid
from waggle.rules.wording import preview

TAG = "rules"


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    revision: int
    is_enabled: bool
    is_template: bool
    definition: dict[str, Any]
    updated_by: str
    updated_at: dt.datetime
    preview: dict[str, str] = Field(default_factory=dict)


class Validation(BaseModel):
    is_valid: bool
    preview: dict[str, str] | None = None
    problems: list[dict[str, str]] = Field(default_factory=list)
    message: str | None = None


class BacktestRequest(BaseModel):
    rule: dict[str, Any]
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    event_limit: int | None = Field(default=None, ge=1, le=2_000_000)


class FiringRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    rule_key: str
    per: str
    key_id: int
    fired_at: dt.datetime
    status: str
    arm: str | None
    trigger_event_id: int | None
    opportunity_id: int | None
    account_id: int | None
    actor_id: int | None
    facts: list[dict[str, Any]]
    explanation: dict[str, str]


class Toggle(BaseModel):
    enabled: bool


def _read(record: Any) -> RuleRead:
    item = RuleRead.model_validate(record)
    item.preview = preview(service.rule_from_record(record))
    return item


def routers() -> list[APIRouter]:
    routes = APIRouter(prefix="/api/v1/rules", tags=[TAG])

    @routes.get("", response_model=list[RuleRead])
    def list_rules(session: SessionDep, actor: ActorDep) -> Any:
        """Every saved rule with its plain-language preview."""
        return [_read(record) for record in service.list_rules(session, actor)]

    @routes.post("", response_model=RuleRead, status_code=201)
    def save(
        session: SessionDep, actor: ActorDep, rule: Annotated[dict[str, Any], Body()]
    ) -> Any:
        """Create a rule or a new revision of it; the engine takes it up live."""
        return _read(service.save_rule(session, actor, rule))

    @routes.post("/apply", response_model=list[RuleRead])
    def apply(
        session: SessionDep,
        actor: ActorDep,
        yaml_text: Annotated[str, Body(media_type="text/plain")],
    ) -> Any:
        """Save every rule of a YAML document (all or nothing)."""
        records = service.apply_rules_text(session, actor, yaml_text)
        return [_read(record) for record in records]

    @routes.post("/validate", response_model=Validation)
    def validate(
        actor: ActorDep, rule: Annotated[dict[str, Any], Body()]
    ) -> Validation:
        """Check a rule without saving it; answer its preview or its problems."""
        try:
            _, words = service.validate_rule(rule)
        except RuleInvalid as error:
            return Validation(
                is_valid=False,
                problems=error.details.get("problems", []),
                message=error.message,
            )
        return Validation(is_valid=True, preview=words)

    @routes.get("/fields")
    def fields(actor: ActorDep) -> list[dict[str, str]]:
        """The fields conditions may name, for autocompletion."""
        return service.field_catalogue()

    @routes.post("/backtest")
    def backtest(
        body: BacktestRequest, session: SessionDep, actor: ActorDep
    ) -> dict[str, Any]:
        """Run a rule over stored history; nothing is sent, nothing is saved."""
        until = body.until or now()
        since = body.since or until - dt.timedelta(days=90)
        report = service.run_backtest(
            session,
            actor,
            body.rule,
            since=since,
            until=until,
            event_limit=body.event_limit,
        )
        return report.as_dict()

    @routes.get("/firings", response_model=list[FiringRead])
    def firings(
        session: SessionDep,
        actor: ActorDep,
        rule_key: str | None = None,
        opportunity_id: int | None = None,
        status: str | None = None,
        before_id: int | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        """The firing log, newest first, each with the facts that caused it."""
        return service.list_firings(
            session,
            actor,
            rule_key=rule_key,
            opportunity_id=opportunity_id,
            status=status,
            before_id=before_id,
            limit=limit,
        )

    @routes.post("/templates", response_model=list[RuleRead])
    def templates(session: SessionDep, actor: ActorDep, enable: bool = False) -> Any:
        """Install the built-in rules (switched off unless ``enable``)."""
        records = service.install_templates(session, actor, enable=enable)
        return [_read(record) for record in records]

    @routes.get("/{key}", response_model=RuleRead)
    def get(key: str, session: SessionDep, actor: ActorDep) -> Any:
        """One rule."""
        return _read(service.get_rule(session, actor, key))

    @routes.put("/{key}/enabled", response_model=RuleRead)
    def toggle(key: str, body: Toggle, session: SessionDep, actor: ActorDep) -> Any:
        """Switch a rule on or off."""
        return _read(service.set_enabled(session, actor, key, enabled=body.enabled))

    @routes.delete("/{key}", status_code=204)
    def delete(key: str, session: SessionDep, actor: ActorDep) -> Response:
        """Remove a rule; its firings stay in the log."""
        service.delete_rule(session, actor, key)
        return Response(status_code=204)

    return [routes]
