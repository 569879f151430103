"""HTTP routes of the org chart, users and tokens."""

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from waggle.apikit import ActorDep, SessionDep, crud_router
from waggle.governance import authorize
from waggle.identity import schemas
from waggle.identity.models import User
from waggle.identity.orgchart import DEPARTMENTS, EMPLOYEES, REGIONS
from waggle.identity.service import create_token, create_user

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
    def list_users(session: SessionDep, actor: ActorDep) -> Any:
        authorize(session, actor, "read", "users")
        return list(session.scalars(select(User).order_by(User.id)))

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

    return router
