"""HTTP routes of the CRM."""

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from waggle.apikit import ActorDep, SessionDep, crud_router
from waggle.crm import api_import, api_pool, schemas
from waggle.crm.dedupe import find_account_duplicates
from waggle.crm.pipelines import (
    apply_pipeline,
    delete_pipeline,
    get_pipeline,
    list_pipelines,
    parse_pipeline,
)
from waggle.crm.service import (
    ACCOUNTS,
    ACTIVITIES,
    CONTACTS,
    OPPORTUNITIES,
    PRODUCTS,
    QUOTAS,
    add_line_item,
    create_account,
    get_line_item,
    line_total,
    list_line_items,
    move_opportunity_stage,
    opportunity_timeline,
    remove_line_item,
    stage_history,
    update_line_item,
)
from waggle.governance import authorize

TAG = "crm"


def routers() -> list[APIRouter]:
    """Return every CRM router, for the application to mount."""
    return [
        crud_router(
            ACCOUNTS,
            create_schema=schemas.AccountCreate,
            update_schema=schemas.AccountUpdate,
            read_schema=schemas.AccountRead,
            tag=TAG,
            create_service=lambda s, a, values: create_account(
                s, a, values, allow_duplicate=values.pop("allow_duplicate", False)
            ),
        ),
        crud_router(
            CONTACTS,
            create_schema=schemas.ContactCreate,
            update_schema=schemas.ContactUpdate,
            read_schema=schemas.ContactRead,
            tag=TAG,
        ),
        crud_router(
            OPPORTUNITIES,
            create_schema=schemas.OpportunityCreate,
            update_schema=schemas.OpportunityUpdate,
            read_schema=schemas.OpportunityRead,
            tag=TAG,
        ),
        crud_router(
            PRODUCTS,
            create_schema=schemas.ProductCreate,
            update_schema=schemas.ProductUpdate,
            read_schema=schemas.ProductRead,
            tag=TAG,
        ),
        crud_router(
            QUOTAS,
            create_schema=schemas.QuotaCreate,
            update_schema=schemas.QuotaUpdate,
            read_schema=schemas.QuotaRead,
            tag=TAG,
        ),
        crud_router(
            ACTIVITIES,
            create_schema=schemas.ActivityCreate,
            update_schema=schemas.ActivityUpdate,
            read_schema=schemas.ActivityRead,
            tag=TAG,
        ),
        _opportunity_actions(),
        _pipeline_routes(),
        _duplicate_routes(),
        api_import.router(),
        api_pool.router(),
    ]


def _opportunity_actions() -> APIRouter:
    router = APIRouter(prefix="/api/v1/opportunities", tags=[TAG])

    @router.post("/{opportunity_id}/stage", response_model=schemas.OpportunityRead)
    def move_stage(
        opportunity_id: int,
        body: schemas.StageMove,
        session: SessionDep,
        actor: ActorDep,
    ) -> Any:
        """Move the opportunity to another stage; refused with the missing fields."""
        return move_opportunity_stage(
            session,
            actor,
            opportunity_id,
            stage_id=body.stage_id,
            loss_reason=body.loss_reason,
        )

    @router.get(
        "/{opportunity_id}/stage-history", response_model=list[schemas.StageChangeRead]
    )
    def history(opportunity_id: int, session: SessionDep, actor: ActorDep) -> Any:
        return stage_history(session, actor, opportunity_id)

    @router.get(
        "/{opportunity_id}/line-items", response_model=list[schemas.LineItemRead]
    )
    def line_items(opportunity_id: int, session: SessionDep, actor: ActorDep) -> Any:
        items = list_line_items(session, actor, opportunity_id)
        return [_line_item_out(item) for item in items]

    @router.post(
        "/{opportunity_id}/line-items",
        status_code=201,
        response_model=schemas.LineItemRead,
    )
    def add_item(
        opportunity_id: int,
        body: schemas.LineItemCreate,
        session: SessionDep,
        actor: ActorDep,
    ) -> Any:
        values = body.model_dump(exclude_unset=True)
        return _line_item_out(add_line_item(session, actor, opportunity_id, values))

    @router.get(
        "/{opportunity_id}/line-items/{line_item_id}",
        response_model=schemas.LineItemRead,
    )
    def read_item(
        opportunity_id: int, line_item_id: int, session: SessionDep, actor: ActorDep
    ) -> Any:
        item = get_line_item(session, actor, opportunity_id, line_item_id)
        return _line_item_out(item)

    @router.patch(
        "/{opportunity_id}/line-items/{line_item_id}",
        response_model=schemas.LineItemRead,
    )
    def change_item(
        opportunity_id: int,
        line_item_id: int,
        body: schemas.LineItemUpdate,
        session: SessionDep,
        actor: ActorDep,
    ) -> Any:
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        item = update_line_item(session, actor, opportunity_id, line_item_id, changes)
        return _line_item_out(item)

    @router.delete("/{opportunity_id}/line-items/{line_item_id}", status_code=204)
    def remove_item(
        opportunity_id: int, line_item_id: int, session: SessionDep, actor: ActorDep
    ) -> Response:
        remove_line_item(session, actor, opportunity_id, line_item_id)
        return Response(status_code=204)

    @router.get("/{opportunity_id}/timeline")
    def timeline(opportunity_id: int, session: SessionDep, actor: ActorDep) -> Any:
        return opportunity_timeline(session, actor, opportunity_id)

    return router


def _line_item_out(item: Any) -> schemas.LineItemRead:
    return schemas.LineItemRead(
        id=item.id,
        opportunity_id=item.opportunity_id,
        product_id=item.product_id,
        quantity=item.quantity,
        unit_price=item.unit_price,
        discount_percent=item.discount_percent,
        total=line_total(item),
    )


def _pipeline_routes() -> APIRouter:
    router = APIRouter(prefix="/api/v1/pipelines", tags=[TAG])

    @router.get("", response_model=list[schemas.PipelineRead])
    def list_(session: SessionDep, actor: ActorDep) -> Any:
        return list_pipelines(session, actor)

    @router.get("/{pipeline_id}", response_model=schemas.PipelineRead)
    def read(pipeline_id: int, session: SessionDep, actor: ActorDep) -> Any:
        return get_pipeline(session, actor, pipeline_id)

    @router.put("", response_model=schemas.PipelineRead)
    def apply(body: dict[str, Any], session: SessionDep, actor: ActorDep) -> Any:
        """Create or replace a pipeline by key (the same document as the YAML file)."""
        return apply_pipeline(
            session, actor, parse_pipeline(body, origin="request body")
        )

    @router.delete("/{pipeline_id}", status_code=204)
    def delete(pipeline_id: int, session: SessionDep, actor: ActorDep) -> Response:
        """Delete a pipeline that is not the default and holds no opportunities."""
        delete_pipeline(session, actor, pipeline_id)
        return Response(status_code=204)

    return router


class DuplicateQuery(BaseModel):
    name: str
    credit_code: str | None = None
    phone: str | None = None
    email_domain: str | None = None


def _duplicate_routes() -> APIRouter:
    router = APIRouter(prefix="/api/v1/duplicates", tags=[TAG])

    @router.post("/accounts")
    def check_accounts(
        body: DuplicateQuery, session: SessionDep, actor: ActorDep
    ) -> Any:
        """Return the accounts a new one would duplicate (撞单检查)."""
        authorize(session, actor, "read", "accounts")
        matches = find_account_duplicates(session, **body.model_dump())
        return [match.__dict__ for match in matches]

    return router
