"""HTTP plumbing shared by every context's router.

A request gets one database session (committed before the response is sent,
rolled back on error), an authenticated :class:`Actor`, and errors in one
body shape: ``{"error": {"code", "message", "details"}}``.
"""

import logging
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Boolean, Integer
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor
from waggle.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PolicyDenied,
    Unauthenticated,
    UpstreamFailure,
    WaggleError,
)
from waggle.governance import record_denial
from waggle.governance.masking import mask_record
from waggle.governance.records import (
    RecordSpec,
    create_record,
    delete_record,
    get_record,
    list_records,
    update_record,
)
from waggle.governance.rls import scope_to_actor
from waggle.identity.service import actor_for_token

logger = logging.getLogger(__name__)

ReadT = TypeVar("ReadT", bound=BaseModel)

STATUS_BY_KIND: list[tuple[type[WaggleError], int]] = [
    (Unauthenticated, 401),
    (PolicyDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (UpstreamFailure, 502),
    (WaggleError, 400),
]
RESERVED_QUERY = {"cursor", "limit", "sort", "q"}
SESSION_COOKIE = "waggle_session"


def status_for(error: WaggleError) -> int:
    return next(status for kind, status in STATUS_BY_KIND if isinstance(error, kind))


def error_body(
    code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def install_error_handlers(app: FastAPI) -> None:
    """Map the error tree and request validation onto the one error body."""

    @app.exception_handler(WaggleError)
    async def _domain_error(request: Request, error: WaggleError) -> JSONResponse:
        return JSONResponse(
            error_body(error.code, error.message, _jsonable(error.details)),
            status_code=status_for(error),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(
        request: Request, error: RequestValidationError
    ) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in item["loc"]), "message": item["msg"]}
            for item in error.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}"
        return JSONResponse(
            error_body("invalid_input", message, {"problems": problems}),
            status_code=422,
        )


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if _is_plain(value)}


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | list | dict | type(None))


def db_session(request: Request) -> Iterator[Session]:
    """Yield the request's session; commit before the response, roll back on error."""
    factory: sessionmaker[Session] = request.app.state.sessions
    session = factory()
    try:
        yield session
        session.commit()
    except PolicyDenied as error:
        session.rollback()
        actor = getattr(request.state, "actor", None)
        if actor is not None:
            record_denial(session, actor, error)
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(db_session, scope="function")]


def current_actor(request: Request, session: SessionDep) -> Actor:
    """Authenticate the request by bearer token or web-session cookie.

    Raises:
        Unauthenticated: neither is present and valid.
    """
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    source_ip = request.client.host if request.client else None
    actor = _actor_from_header(session, request, source_ip) or _actor_from_cookie(
        session, request, source_ip
    )
    if actor is None:
        raise Unauthenticated("send 'Authorization: Bearer <token>' or log in")
    actor = Actor(**{**actor.__dict__, "request_id": request_id})
    request.state.actor = actor
    scope_to_actor(session, actor)
    return actor


def _actor_from_header(
    session: Session, request: Request, source_ip: str | None
) -> Actor | None:
    header = request.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return actor_for_token(session, secret.strip(), source_ip=source_ip)


def _actor_from_cookie(
    session: Session, request: Request, source_ip: str | None
) -> Actor | None:
    loader = getattr(request.app.state, "cookie_actor", None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if loader is None or not cookie:
        return None
    actor: Actor | None = loader(session, cookie, source_ip)
    return actor


ActorDep = Annotated[Actor, Depends(current_actor)]


class PageOut(BaseModel):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[Any]
    next_cursor: str | None = Field(default=None)


def query_filters(request: Request, spec: RecordSpec[Any]) -> dict[str, Any]:
    """Read ``field=value`` filters from the query string, typed by column.

    Raises:
        InvalidInput: an unknown filter or a value of the wrong type.
    """
    filters: dict[str, Any] = {}
    for name, raw in request.query_params.items():
        if name in RESERVED_QUERY:
            continue
        if name not in spec.filters:
            raise InvalidInput(
                f"{spec.name}: cannot filter on {name!r}; "
                f"filters are {', '.join(spec.filters) or 'none'}"
            )
        filters[name] = _typed(spec, name, raw)
    return filters


def _typed(spec: RecordSpec[Any], name: str, raw: str) -> Any:
    column_type = spec.column(name).property.columns[0].type
    if isinstance(column_type, Boolean):
        if raw.lower() not in {"true", "false", "1", "0"}:
            raise InvalidInput(
                f"{spec.name}.{name}: expected true or false, got {raw!r}"
            )
        return raw.lower() in {"true", "1"}
    if isinstance(column_type, Integer):
        try:
            return int(raw)
        except ValueError as exc:
            raise InvalidInput(
                f"{spec.name}.{name}: expected an integer, got {raw!r}"
            ) from exc
    return raw


def crud_router(
    spec: RecordSpec[Any],
    *,
    create_schema: type[BaseModel],
    update_schema: type[BaseModel],
    read_schema: type[BaseModel],
    tag: str,
    create_service: Any = None,
) -> APIRouter:
    """Build the list/create/read/update/delete/bulk routes of one resource."""
    router = APIRouter(prefix=f"/api/v1/{spec.name}", tags=[tag])
    creator = create_service or (lambda s, a, values: create_record(s, a, spec, values))
    filter_docs = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in spec.filters
    ]

    @router.get(
        "",
        summary=f"List {spec.name}",
        openapi_extra={"parameters": filter_docs},
        response_model=PageOut,
    )
    def list_(
        request: Request,
        session: SessionDep,
        actor: ActorDep,
        cursor: str | None = None,
        limit: int = 50,
        sort: str = "id",
        q: str | None = None,
    ) -> dict[str, Any]:
        page = list_records(
            session,
            actor,
            spec,
            filters=query_filters(request, spec),
            search=q,
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
        items = [
            read_schema.model_validate(item).model_dump(mode="json")
            for item in page.items
        ]
        return {"items": items, "next_cursor": page.next_cursor}

    @router.post("", status_code=201, summary=f"Create one of {spec.name}")
    def create(body: create_schema, session: SessionDep, actor: ActorDep) -> Any:  # type: ignore[valid-type]
        record = creator(session, actor, body.model_dump(exclude_unset=True))  # type: ignore[attr-defined]
        return read_schema.model_validate(_shown(session, actor, spec, record))

    @router.post("/bulk", status_code=201, summary=f"Create many {spec.name} at once")
    def bulk_create(
        body: list[create_schema],  # type: ignore[valid-type]
        session: SessionDep,
        actor: ActorDep,
    ) -> dict[str, Any]:
        if len(body) > 1000:
            raise InvalidInput(f"{spec.name}/bulk: at most 1000 items, got {len(body)}")
        created = []
        for index, item in enumerate(body):
            try:
                values = item.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
                created.append(creator(session, actor, values))
            except (InvalidInput, Conflict) as error:
                raise type(error)(
                    f"item {index}: {error.message}", code=error.code
                ) from error
        return {
            "items": [
                read_schema.model_validate(_shown(session, actor, spec, r)).model_dump(
                    mode="json"
                )
                for r in created
            ]
        }

    @router.get("/{record_id}", summary=f"Read one of {spec.name}")
    def read(record_id: int, session: SessionDep, actor: ActorDep) -> Any:
        return read_schema.model_validate(get_record(session, actor, spec, record_id))

    @router.patch("/{record_id}", summary=f"Change one of {spec.name}")
    def update(
        record_id: int,
        body: update_schema,  # type: ignore[valid-type]
        session: SessionDep,
        actor: ActorDep,
    ) -> Any:
        changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
        record = update_record(session, actor, spec, record_id, changes)
        return read_schema.model_validate(_shown(session, actor, spec, record))

    @router.delete(
        "/{record_id}", status_code=204, summary=f"Delete one of {spec.name}"
    )
    def delete(record_id: int, session: SessionDep, actor: ActorDep) -> Response:
        delete_record(session, actor, spec, record_id)
        return Response(status_code=204)

    return router


def _shown(session: Session, actor: Actor, spec: RecordSpec[Any], record: Any) -> Any:
    """Mask a written record for its response, as reads are (an empty PATCH
    must not reveal what a read would mask)."""
    return mask_record(session, actor, record, owner_column=spec.owner_column)
