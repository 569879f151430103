"""HTTP routes of the org chart, users and tokens."""

from typing import Any

from fastapi import APIRouter, Response

from waggle.apikit import ActorDep, SessionDep, crud_router
from waggle.identity import schemas
from waggle.identity.orgchart import DEPARTMENTS, EMPLOYEES, REGIONS
from waggle.identity.service import (
    create_token,
    create_user,
    deactivate_user,
    get_user,
    list_tokens,
    list_users,
    revoke_token,
    update_user,
)

TAG = "identity"


def routers() -> list[APIRouter]:
    return [
        crud_router(
            REGIONS,
            create_schema=schemas.RegionCreate,
            update_schema=schemas.RegionUpdate,
            read_schema=schemas.RegionRead,
            tag=TAG,
        ),
        crud_router(
            DEPARTMENTS,
            create_schema=schemas.DepartmentCreate,
            update_schema=schemas.DepartmentUpdate,
            read_schema=schemas.DepartmentRead,
            tag=TAG,
        ),
        crud_router(
            EMPLOYEES,
            create_schema=schemas.EmployeeCreate,
            update_schema=schemas.EmployeeUpdate,
            read_schema=schemas.EmployeeRead,
            tag=TAG,
        ),
        _user_routes(),
    ]


def _user_routes() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=[TAG])

    @router.get("/me")
    def me(actor: ActorDep) -> dict[str, Any]:
        return {
            "username": actor.username,
            "roles": sorted(actor.roles),
            "employee_id": actor.employee_id,
        }

    @router.get("/users", response_model=list[schemas.UserRead])
    def users(session: SessionDep, actor: ActorDep) -> Any:
        return list_users(session, actor)

    @router.get("/users/{user_id}", response_model=schemas.UserRead)
    def read_user(user_id: int, session: SessionDep, actor: ActorDep) -> Any:
        return get_user(session, actor, user_id)

    @router.patch("/users/{user_id}", response_model=schemas.UserRead)
    def change_user(
        user_id: int, body: schemas.UserUpdate, session: SessionDep, actor: ActorDep
    ) -> Any:
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        if "roles" in changes:
            changes["roles"] = [role.value for role in body.roles or []]
        return update_user(session, actor, user_id, changes)

    @router.delete("/users/{user_id}", status_code=204)
    def remove_user(user_id: int, session: SessionDep, actor: ActorDep) -> Response:
        """Deactivate the login and revoke its tokens; the row stays for the audit."""
        deactivate_user(session, actor, user_id)
        return Response(status_code=204)

    @router.post("/users", status_code=201, response_model=schemas.UserRead)
    def add_user(body: schemas.UserCreate, session: SessionDep, actor: ActorDep) -> Any:
        return create_user(
            session,
            actor,
            username=body.username,
            password=body.password,
            roles=[role.value for role in body.roles],
            employee_external_id=body.employee_external_id,
            locale=body.locale,
        )

    @router.post("/tokens", status_code=201, response_model=schemas.TokenIssued)
    def add_token(
        body: schemas.TokenCreate, session: SessionDep, actor: ActorDep
    ) -> Any:
        """Issue an API token; the secret appears in this response only."""
        issued = create_token(
            session, actor, username=body.username or actor.username, name=body.name
        )
        return schemas.TokenIssued(
            id=issued.token_id, name=issued.name, token=issued.secret
        )

    @router.get("/tokens", response_model=list[schemas.TokenRead])
    def tokens(
        session: SessionDep, actor: ActorDep, username: str | None = None
    ) -> Any:
        """List tokens (yours unless ``username`` names another user); no secrets."""
        return list_tokens(session, actor, username=username or actor.username)

    @router.delete("/tokens/{token_id}", status_code=204)
    def revoke(token_id: int, session: SessionDep, actor: ActorDep) -> Response:
        revoke_token(session, actor, token_id)
        return Response(status_code=204)

    return router
