"""Pages of the rules context: rules, the editor, firings, backtests, experiments.

Also the in-app inbox, whose notifications are mostly what rules send. Every
page calls the governed services of :mod:`waggle.rules.service`,
:mod:`waggle.rules.experiments` and :mod:`waggle.channels.inbox` with the
page's actor, so a refusal is the standard refusal page (and is audited).
The editor checks and dry-runs the YAML as it is typed through HTMX
fragments (``POST /rules/check``, ``POST /rules/dry-run``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import yaml
from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, Response

from waggle.apikit import SessionDep, status_for
from waggle.channels import inbox
from waggle.core.clock import now
from waggle.core.errors import InvalidInput, PolicyDenied, WaggleError
from waggle.crm.service import OPPORTUNITIES
from waggle.governance import authorize
from waggle.rules import experiments, service
from waggle.rules.errors import RuleInvalid
from waggle.rules.language import FIELDS, Rule, load_rules_text, rule_to_data
from waggle.rules.models import RuleRecord
from waggle.rules.wording import preview
from waggle.web.context import (
    FormDep,
    FormPageDep,
    PageContext,
    PageDep,
    abandon,
    describe_error,
    query_int,
    query_text,
)
from waggle.web.queries import names_by_id

DRY_RUN_DAYS = 14
DRY_RUN_SHOWN = 10
BACKTEST_DAYS = 90
MAX_BACKTEST_DAYS = 730
BACKTEST_SHOWN = 50
FIRINGS_PAGE = 200
FIRING_STATUSES = ("fired", "throttled", "holdout", "late")
NAMESPACES = ("event", "opportunity", "account", "contact", "rep")
INBOX_PAGE = 100
STARTER_RULE: dict[str, Any] = {
    "key": "new-rule",
    "name": {"zh-CN": "新规则", "en": "New rule"},
    "per": "opportunity",
    "when": {
        "count": {
            "of": {"type": "tracker_hit", "category": "pricing", "speaker": "customer"},
            "within": "7d",
            "at_least": 3,
        }
    },
    "then": [{"notify": {"to": "owner", "channel": "inapp"}}],
}

router = APIRouter(include_in_schema=False)


# --- the rule list ----------------------------------------------------------


@dataclass(frozen=True)
class RuleRow:
    """One saved rule as the list shows it."""

    record: RuleRecord
    name: str
    preview: str


@router.get("/rules")
def rules_list(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List the saved rules with their plain-language preview and toggles."""
    return _rules_view(page, session, notice=_rules_notice(page))


def _rules_view(
    page: PageContext,
    session: Session,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    records = service.list_rules(session, page.actor)
    return page.render(
        "rules_list.html",
        status_code=status_code,
        rows=[_rule_row(page, record) for record in records],
        may_write=page.may("create", service.RULES),
        may_update=page.may("update", service.RULES),
        notice=notice,
        error=error,
    )


def _rule_row(page: PageContext, record: RuleRecord) -> RuleRow:
    try:
        words = preview(service.rule_from_record(record))[page.locale]
    except RuleInvalid as error:
        words = describe_error(page.t, error)
    return RuleRow(
        record=record,
        name=localised(record.definition.get("name"), page.locale, record.key),
        preview=words,
    )


def localised(value: object, locale: str, default: str) -> str:
    """Return the text of ``value`` (a per-locale dict or a string) for ``locale``."""
    if isinstance(value, dict):
        text = value.get(locale) or value.get("zh-CN") or value.get("en")
        return str(text) if text else default
    return str(value) if value else default


def _rules_notice(page: PageContext) -> str | None:
    params = page.request.query_params
    done, key = query_text(params, "done"), query_text(params, "key")
    if done == "saved":
        return page.t("rules.saved", rule=key)
    if done in ("enabled", "disabled"):
        return page.t(f"rules.done_{done}", rule=key)
    if done == "templates":
        return page.t("rules.templates_installed", count=query_int(params, "count"))
    return None


@router.post("/rules/{key}/enabled")
def toggle_rule(
    key: str, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Switch a rule on or off; the live engine follows at its next run."""
    enabled = str(form.get("enabled") or "") == "true"
    try:
        service.set_enabled(session, page.actor, key, enabled=enabled)
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _rules_view(
            page,
            session,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    done = "enabled" if enabled else "disabled"
    return RedirectResponse(f"/rules?{urlencode({'done': done, 'key': key})}", 303)


@router.post("/rules/templates")
def install_rule_templates(page: FormPageDep, session: SessionDep) -> Response:
    """Install the built-in templates, switched off; edited ones are kept."""
    records = service.install_templates(session, page.actor)
    query = urlencode({"done": "templates", "count": len(records)})
    return RedirectResponse(f"/rules?{query}", 303)


# --- the editor -------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """What the editor's check found: the preview, or the problems."""

    previews: dict[str, str] | None
    problems: list[dict[str, str]]
    message: str | None

    @property
    def is_valid(self) -> bool:
        return self.previews is not None


def rule_yaml(data: Mapping[str, Any]) -> str:
    """Return a rule's data as the YAML the editor shows (Chinese kept as is)."""
    return yaml.safe_dump(dict(data), allow_unicode=True, sort_keys=False)


def single_rule(text: str) -> Rule:
    """Read exactly one rule from the editor's YAML.

    Raises:
        RuleInvalid: not YAML, an invalid rule, or not exactly one rule.
    """
    rules = load_rules_text(text, source="editor")
    if len(rules) != 1:
        raise RuleInvalid(
            f"editor: expected exactly one rule, got {len(rules)}",
            problems=[{"field": "rule", "message": "expected exactly one rule"}],
        )
    return rules[0]


def check_text(text: str) -> tuple[Rule | None, Check]:
    """Return the rule in ``text`` (if valid) and the check to show for it."""
    try:
        rule = single_rule(text)
    except RuleInvalid as error:
        problems = list(error.details.get("problems") or [])
        return None, Check(None, problems, error.message)
    return rule, Check(preview(rule), [], None)


@router.get("/rules/new")
def new_rule(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the editor with a starter rule to adapt."""
    authorize(session, page.actor, "create", service.RULES)
    text = rule_yaml(STARTER_RULE)
    return _editor_view(page, text=text, original_key=None, check=check_text(text)[1])


@router.get("/rules/{key}/edit")
def edit_rule(key: str, page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the editor on a saved rule's current definition."""
    record = service.get_rule(session, page.actor, key)
    authorize(session, page.actor, "update", service.RULES)
    text = rule_yaml(record.definition)
    return _editor_view(page, text=text, original_key=key, check=check_text(text)[1])


def _editor_view(
    page: PageContext,
    *,
    text: str,
    original_key: str | None,
    check: Check,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page.render(
        "rules_editor.html",
        status_code=status_code,
        text=text,
        original_key=original_key,
        check=check,
        fields=sorted(FIELDS.items()),
        namespaces=NAMESPACES,
        dry_run_days=DRY_RUN_DAYS,
        error=error,
    )


@router.post("/rules/check")
def check_rule(page: FormPageDep, form: FormDep) -> HTMLResponse:
    """Return the check fragment: the preview in both languages, or the problems."""
    _, check = check_text(str(form.get("yaml") or ""))
    return page.render("rules_editor.html", fragment="check", check=check)


@router.post("/rules/dry-run")
def dry_run_rule(page: FormPageDep, session: SessionDep, form: FormDep) -> HTMLResponse:
    """Return the dry-run fragment: how often the rule fired over the last 14 days."""
    rule, check = check_text(str(form.get("yaml") or ""))
    if rule is None:
        return page.render("rules_editor.html", fragment="check", check=check)
    until = now()
    since = until - dt.timedelta(days=DRY_RUN_DAYS)
    report = service.run_backtest(
        session, page.actor, rule_to_data(rule), since=since, until=until
    )
    return page.render(
        "rules_editor.html",
        fragment="dry_run",
        report=report.as_dict(firing_limit=DRY_RUN_SHOWN),
        days=DRY_RUN_DAYS,
    )


@router.post("/rules/save")
def save_rule_form(page: FormPageDep, session: SessionDep, form: FormDep) -> Response:
    """Save the editor's rule; problems are shown inline with the text kept."""
    text = str(form.get("yaml") or "")
    original_key = str(form.get("original_key") or "") or None
    try:
        rule = single_rule(text)
        record = service.save_rule(session, page.actor, rule_to_data(rule))
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _editor_view(
            page,
            text=text,
            original_key=original_key,
            check=check_text(text)[1],
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    query = urlencode({"done": "saved", "key": record.key})
    return RedirectResponse(f"/rules?{query}", 303)


# --- firings and backtests --------------------------------------------------


@dataclass(frozen=True)
class FiringFilter:
    """The firing log's filter as chosen (empty means any)."""

    rule_key: str
    status: str

    @classmethod
    def of(cls, values: Mapping[str, str]) -> FiringFilter:
        status = query_text(values, "status")
        return cls(
            rule_key=query_text(values, "rule"),
            status=status if status in FIRING_STATUSES else "",
        )


@router.get("/rules/firings")
def rule_firings(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the firing log with the reasons; a rep sees firings of own deals only."""
    chosen = FiringFilter.of(page.request.query_params)
    firings = service.list_firings(
        session,
        page.actor,
        rule_key=chosen.rule_key or None,
        status=chosen.status or None,
        limit=FIRINGS_PAGE,
    )
    names = names_by_id(
        session, page.actor, OPPORTUNITIES, (f.opportunity_id for f in firings)
    )
    rule_names = _rule_names(session, page)
    return page.render(
        "rules_firings.html",
        firings=firings,
        chosen=chosen,
        statuses=FIRING_STATUSES,
        opportunity_names=names,
        rule_names=rule_names,
    )


def _rule_names(session: Session, page: PageContext) -> dict[str, str]:
    if not page.may("read", service.RULES):
        return {}
    return {
        record.key: localised(record.definition.get("name"), page.locale, record.key)
        for record in service.list_rules(session, page.actor)
    }


@router.get("/rules/{key}/backtest")
def rule_backtest(key: str, page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show how the saved rule would have fired over the last ``days`` days."""
    days = query_int(page.request.query_params, "days") or BACKTEST_DAYS
    days = min(max(days, 1), MAX_BACKTEST_DAYS)
    record = service.get_rule(session, page.actor, key)
    until = now()
    report = service.run_backtest(
        session,
        page.actor,
        record.definition,
        since=until - dt.timedelta(days=days),
        until=until,
    ).as_dict(firing_limit=BACKTEST_SHOWN)
    return page.render(
        "rules_backtest.html",
        record=record,
        name=localised(record.definition.get("name"), page.locale, key),
        days=days,
        report=report,
        statuses=FIRING_STATUSES,
        chart=_week_chart(page, report["by_week"]),
    )


def _week_chart(page: PageContext, by_week: Mapping[str, int]) -> dict[str, Any]:
    """Return the weekly counts for the page's JSON island (read by rules-editor.js)."""
    return {
        "weeks": list(by_week),
        "counts": list(by_week.values()),
        "label": page.t("rules.firing_count"),
    }


# --- experiments ------------------------------------------------------------


@router.get("/experiments")
def experiments_list(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List the experiments with a form to start one (sales operations)."""
    notice = None
    done, key = (query_text(page.request.query_params, n) for n in ("done", "key"))
    if done in ("created", "stopped"):
        notice = page.t(f"experiments.done_{done}", experiment=key)
    return _experiments_view(page, session, values={}, notice=notice)


def _experiments_view(
    page: PageContext,
    session: Session,
    *,
    values: Mapping[str, str],
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = experiments.list_experiments(session, page.actor)
    may_create = page.may("create", experiments.RESOURCE)
    rule_keys: list[str] = []
    if may_create and page.may("read", service.RULES):
        rule_keys = [record.key for record in service.list_rules(session, page.actor)]
    return page.render(
        "experiments.html",
        status_code=status_code,
        experiments=found,
        may_create=may_create,
        may_update=page.may("update", experiments.RESOURCE),
        rule_keys=rule_keys,
        metrics=experiments.METRICS,
        values=values,
        notice=notice,
        error=error,
    )


EXPERIMENT_NUMBERS: dict[str, type[int] | type[float]] = {
    "holdout_share": float,
    "window_days": int,
    "planned_sample_size": int,
    "minimum_detectable_effect": float,
    "confidence_level": float,
}


def experiment_plan(form: Mapping[str, Any]) -> dict[str, Any]:
    """Read the create form into the arguments of ``create_experiment``.

    Raises:
        InvalidInput: a number field is empty or not a number (named).
    """
    plan: dict[str, Any] = {
        name: str(form.get(name) or "").strip()
        for name in ("key", "name", "rule_ref", "metric")
    }
    for name, kind in EXPERIMENT_NUMBERS.items():
        raw = str(form.get(name) or "").strip()
        try:
            plan[name] = kind(raw)
        except ValueError as exc:
            raise InvalidInput(
                f"experiments.{name}: expected a number, got {raw!r}", field=name
            ) from exc
    return plan


@router.post("/experiments")
def create_experiment_form(
    page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Start an experiment from the form; problems are shown with the values kept."""
    values = {name: str(value) for name, value in form.items()}
    try:
        experiment = experiments.create_experiment(
            session, page.actor, **experiment_plan(form)
        )
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _experiments_view(
            page,
            session,
            values=values,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    query = urlencode({"done": "created", "key": experiment.key})
    return RedirectResponse(f"/experiments?{query}", 303)


@router.post("/experiments/{key}/stop")
def stop_experiment_form(key: str, page: FormPageDep, session: SessionDep) -> Response:
    """Stop an experiment; its report stays readable."""
    try:
        experiments.stop_experiment(session, page.actor, key)
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _experiments_view(
            page,
            session,
            values={},
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    query = urlencode({"done": "stopped", "key": key})
    return RedirectResponse(f"/experiments?{query}", 303)


@router.get("/experiments/{key}")
def experiment_page(key: str, page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show an experiment's report: arms, effect, CUPED, sample size, peeking."""
    report = experiments.experiment_report(session, page.actor, key).as_dict()
    found = {e.key: e for e in experiments.list_experiments(session, page.actor)}
    spec = experiments.METRICS[report["metric"]]
    return page.render(
        "experiment_report.html",
        experiment=found.get(key),
        report=report,
        metric_name=spec.name_zh if page.locale == "zh-CN" else spec.name_en,
        unit=spec.unit_zh if page.locale == "zh-CN" else spec.unit_en,
        scale=spec.scale,
    )


# --- the inbox --------------------------------------------------------------


@router.get("/inbox")
def inbox_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List the user's notifications, unread first, each with a mark-read button."""
    items = inbox.list_inbox(session, page.actor, include_read=True, limit=INBOX_PAGE)
    ordered = sorted(items, key=lambda item: item.read_at is not None)
    notice = None
    if query_text(page.request.query_params, "done") == "read":
        notice = page.t("inbox.marked_read")
    return page.render(
        "inbox.html",
        notifications=ordered,
        unread=inbox.count_unread(session, page.actor),
        notice=notice,
    )


@router.get("/inbox/unread")
def inbox_unread(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Return the navigation's unread badge as an HTMX fragment."""
    count = inbox.count_unread(session, page.actor)
    return page.render("inbox.html", fragment="badge", unread=count)


@router.post("/inbox/{notification_id}/read")
def mark_notification_read(
    notification_id: int, page: FormPageDep, session: SessionDep
) -> Response:
    """Mark one of the user's notifications read."""
    inbox.mark_read(session, page.actor, notification_id)
    return RedirectResponse("/inbox?done=read", 303)
