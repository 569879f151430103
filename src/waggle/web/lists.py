"""List pages of opportunities, accounts and contacts: filters, sorting, cursors.

Filter forms submit by HTMX into the ``results`` element (and push the URL, so
a filtered list can be bookmarked); without JavaScript they are plain GET forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse

from waggle.apikit import SessionDep
from waggle.core.errors import InvalidInput
from waggle.crm.models import DecisionRole, OpportunityStatus
from waggle.crm.service import ACCOUNTS, CONTACTS, OPPORTUNITIES
from waggle.governance.records import RecordSpec, list_records
from waggle.identity.orgchart import EMPLOYEES
from waggle.web.context import (
    PageContext,
    PageDep,
    abandon,
    describe_error,
    query_int,
    query_text,
)
from waggle.web.queries import (
    names_by_id,
    owner_choices,
    readable_pipelines,
    stage_index,
)

PAGE_SIZES = (25, 50, 100)

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class ListView:
    """What one list page offers: its filters by kind and its sort orders."""

    spec: RecordSpec[Any]
    template: str
    rows_template: str
    sorts: tuple[str, ...]
    id_filters: tuple[str, ...] = ()
    text_filters: tuple[str, ...] = ()
    bool_filters: tuple[str, ...] = ()


@dataclass
class Listing:
    """One page of a list as shown, with the state of its filter form."""

    items: list[Any]
    values: dict[str, str]
    sort: str
    limit: int
    next_href: str | None
    first_href: str | None
    error: str | None = None


OPPORTUNITY_LIST = ListView(
    spec=OPPORTUNITIES,
    template="opportunities.html",
    rows_template="_opportunity_rows.html",
    sorts=("-updated_at", "-amount", "amount", "expected_close_on", "name"),
    id_filters=("stage_id", "owner_id", "account_id"),
    text_filters=("status",),
)
ACCOUNT_LIST = ListView(
    spec=ACCOUNTS,
    template="accounts.html",
    rows_template="_account_rows.html",
    sorts=("name", "-created_at", "-last_followed_at", "last_followed_at"),
    id_filters=("owner_id",),
    text_filters=("industry", "province", "city"),
    bool_filters=("is_in_public_pool",),
)
CONTACT_LIST = ListView(
    spec=CONTACTS,
    template="contacts.html",
    rows_template="_contact_rows.html",
    sorts=("name", "-created_at"),
    id_filters=("owner_id", "account_id"),
    text_filters=("decision_role",),
)


@router.get("/opportunities")
def opportunities(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List opportunities with stage, status and owner filters."""
    pipelines = readable_pipelines(session, page.actor)
    page.stages = stage_index(pipelines)
    listing = _list(page, session, OPPORTUNITY_LIST)
    return _render(
        page,
        OPPORTUNITY_LIST,
        listing,
        pipelines=pipelines,
        statuses=[status.value for status in OpportunityStatus],
        accounts=names_by_id(
            session, page.actor, ACCOUNTS, (o.account_id for o in listing.items)
        ),
        owners=_owner_names(session, page, listing),
        owner_options=owner_choices(session, page.actor, OPPORTUNITIES.name),
    )


@router.get("/accounts")
def accounts(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List accounts with industry, place, owner and public-pool filters."""
    listing = _list(page, session, ACCOUNT_LIST)
    return _render(
        page,
        ACCOUNT_LIST,
        listing,
        owners=_owner_names(session, page, listing),
        owner_options=owner_choices(session, page.actor, ACCOUNTS.name),
    )


@router.get("/contacts")
def contacts(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List contacts with decision-role and owner filters."""
    listing = _list(page, session, CONTACT_LIST)
    return _render(
        page,
        CONTACT_LIST,
        listing,
        roles=[role.value for role in DecisionRole],
        accounts=names_by_id(
            session, page.actor, ACCOUNTS, (c.account_id for c in listing.items)
        ),
        owners=_owner_names(session, page, listing),
        owner_options=owner_choices(session, page.actor, CONTACTS.name),
    )


def _list(page: PageContext, session: Session, view: ListView) -> Listing:
    params = page.request.query_params
    values = {name: query_text(params, name) for name in _form_fields(view)}
    sort = values["sort"] if values["sort"] in view.sorts else view.sorts[0]
    limit = query_int(params, "limit") or PAGE_SIZES[0]
    limit = limit if limit in PAGE_SIZES else PAGE_SIZES[0]
    cursor = query_text(params, "cursor") or None
    listing = Listing(
        items=[], values=values, sort=sort, limit=limit, next_href=None, first_href=None
    )
    try:
        result = list_records(
            session,
            page.actor,
            view.spec,
            filters=_filters(view, values),
            search=values["q"] or None,
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
    except InvalidInput as error:
        abandon(session, page.actor, error)
        listing.error = describe_error(page.t, error)
        return listing
    listing.items = result.items
    base = {k: v for k, v in values.items() if v} | {"sort": sort, "limit": str(limit)}
    if result.next_cursor:
        query = urlencode(base | {"cursor": result.next_cursor})
        listing.next_href = f"{page.request.url.path}?{query}"
    if cursor:
        listing.first_href = f"{page.request.url.path}?{urlencode(base)}"
    return listing


def _form_fields(view: ListView) -> tuple[str, ...]:
    return ("q", "sort", *view.id_filters, *view.text_filters, *view.bool_filters)


def _filters(view: ListView, values: dict[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for name in view.id_filters:
        if values[name].isdigit():
            filters[name] = int(values[name])
    for name in view.text_filters:
        if values[name]:
            filters[name] = values[name]
    for name in view.bool_filters:
        if values[name] in ("true", "false"):
            filters[name] = values[name] == "true"
    return filters


def _owner_names(
    session: Session, page: PageContext, listing: Listing
) -> dict[int, str]:
    return names_by_id(
        session, page.actor, EMPLOYEES, (item.owner_id for item in listing.items)
    )


def _render(
    page: PageContext, view: ListView, listing: Listing, **values: Any
) -> HTMLResponse:
    # A refused filter is shown inline with status 200: HTMX swaps only 2xx.
    template = view.rows_template if is_partial(page.request) else view.template
    return page.render(
        template,
        listing=listing,
        sorts=view.sorts,
        page_sizes=PAGE_SIZES,
        **values,
    )


def is_partial(request: Request) -> bool:
    """Return whether HTMX asked for the results only (not a history restore)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == "results"
        and request.headers.get("hx-history-restore-request") != "true"
    )
