"""API shapes of the CRM resources."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from waggle.crm.credit_code import is_valid_credit_code
from waggle.crm.models import ActivityKind, DecisionRole, ForecastCategory

ShortText = Annotated[str, Field(min_length=1, max_length=200)]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


def _checked_credit_code(code: str) -> str:
    if not is_valid_credit_code(code):
        raise ValueError("not a unified social credit code (wrong check character)")
    return code


CreditCode = Annotated[
    str,
    Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$"),
    AfterValidator(_checked_credit_code),
]
Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=16, decimal_places=2),
    AfterValidator(lambda value: value.quantize(Decimal("0.01"))),
]


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class WriteModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AccountCreate(WriteModel):
    external_id: str | None = Field(default=None, max_length=80)
    name: ShortText
    industry: str | None = Field(default=None, max_length=60)
    region_id: int | None = None
    size: str | None = Field(default=None, max_length=20)
    province: str | None = Field(default=None, max_length=40)
    city: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=300)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    owner_id: int | None = None
    credit_code: CreditCode | None = None
    phone: str | None = Field(default=None, max_length=40)
    email_domain: str | None = Field(default=None, max_length=120)
    website: str | None = Field(default=None, max_length=200)
    allow_duplicate: bool = False  # create despite matches (撞单); sales_ops only

    @field_validator("email_domain")
    @classmethod
    def _lower_domain(cls, value: str | None) -> str | None:
        return value.lower().lstrip("@") if value else value


class AccountUpdate(WriteModel):
    name: ShortText | None = None
    industry: str | None = Field(default=None, max_length=60)
    region_id: int | None = None
    size: str | None = Field(default=None, max_length=20)
    province: str | None = Field(default=None, max_length=40)
    city: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=300)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    owner_id: int | None = None
    credit_code: CreditCode | None = None
    phone: str | None = Field(default=None, max_length=40)
    email_domain: str | None = Field(default=None, max_length=120)
    website: str | None = Field(default=None, max_length=200)


class AccountRead(ReadModel):
    id: int
    external_id: str
    name: str
    normalized_name: str
    industry: str | None
    region_id: int | None
    size: str | None
    province: str | None
    city: str | None
    address: str | None
    latitude: float | None
    longitude: float | None
    owner_id: int | None
    credit_code: str | None
    phone: str | None
    email_domain: str | None
    website: str | None
    is_in_public_pool: bool
    last_followed_at: dt.datetime | None
    merged_into_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ContactCreate(WriteModel):
    external_id: str | None = Field(default=None, max_length=80)
    account_id: int
    name: ShortText
    title: str | None = Field(default=None, max_length=120)
    decision_role: DecisionRole | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(
        default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$"
    )
    wechat_id: str | None = Field(default=None, max_length=80)
    owner_id: int | None = None


class ContactUpdate(WriteModel):
    name: ShortText | None = None
    title: str | None = Field(default=None, max_length=120)
    decision_role: DecisionRole | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(
        default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$"
    )
    wechat_id: str | None = Field(default=None, max_length=80)
    owner_id: int | None = None


class ContactRead(ReadModel):
    id: int
    external_id: str
    account_id: int
    name: str
    title: str | None
    decision_role: str | None
    phone: str | None
    email: str | None
    wechat_id: str | None
    owner_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class OpportunityCreate(WriteModel):
    external_id: str | None = Field(default=None, max_length=80)
    name: ShortText
    account_id: int
    pipeline_id: int | None = None
    stage_id: int | None = None
    amount: Amount = Decimal("0")
    currency: CurrencyCode = "CNY"
    expected_close_on: dt.date | None = None
    owner_id: int | None = None
    source: str | None = Field(default=None, max_length=40)
    forecast_category: ForecastCategory = ForecastCategory.PIPELINE
    manual_probability: int | None = Field(default=None, ge=0, le=100)
    customer_pain_points: str | None = Field(default=None, max_length=4000)
    decision_maker_contact_id: int | None = None
    budget_confirmed: bool = False


class OpportunityUpdate(WriteModel):
    name: ShortText | None = None
    stage_id: int | None = None
    amount: Amount | None = None
    currency: CurrencyCode | None = None
    expected_close_on: dt.date | None = None
    owner_id: int | None = None
    source: str | None = Field(default=None, max_length=40)
    loss_reason: str | None = Field(default=None, max_length=200)
    forecast_category: ForecastCategory | None = None
    manual_probability: int | None = Field(default=None, ge=0, le=100)
    customer_pain_points: str | None = Field(default=None, max_length=4000)
    decision_maker_contact_id: int | None = None
    budget_confirmed: bool | None = None


class OpportunityRead(ReadModel):
    id: int
    external_id: str
    name: str
    account_id: int
    pipeline_id: int
    stage_id: int
    amount: Decimal
    currency: str
    expected_close_on: dt.date | None
    owner_id: int | None
    source: str | None
    status: str
    loss_reason: str | None
    forecast_category: str
    manual_probability: int | None
    customer_pain_points: str | None
    decision_maker_contact_id: int | None
    budget_confirmed: bool
    stage_entered_at: dt.datetime
    closed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class StageMove(WriteModel):
    stage_id: int
    loss_reason: str | None = Field(default=None, max_length=200)


class StageChangeRead(ReadModel):
    id: int
    opportunity_id: int
    from_stage_id: int | None
    to_stage_id: int
    changed_at: dt.datetime
    seconds_in_previous_stage: int | None
    changed_by: str | None


class ProductCreate(WriteModel):
    external_id: str | None = Field(default=None, max_length=80)
    sku: Annotated[str, Field(min_length=1, max_length=60)]
    name: ShortText
    category: str | None = Field(default=None, max_length=60)
    unit_price: Amount = Decimal("0")
    currency: CurrencyCode = "CNY"
    is_active: bool = True


class ProductUpdate(WriteModel):
    name: ShortText | None = None
    category: str | None = Field(default=None, max_length=60)
    unit_price: Amount | None = None
    currency: CurrencyCode | None = None
    is_active: bool | None = None


class ProductRead(ReadModel):
    id: int
    external_id: str
    sku: str
    name: str
    category: str | None
    unit_price: Decimal
    currency: str
    is_active: bool


class QuotaCreate(WriteModel):
    external_id: str | None = Field(default=None, max_length=80)
    owner_id: int
    period: Annotated[str, Field(pattern=r"^\d{4}-(Q[1-4]|M(0[1-9]|1[0-2]))$")]
    amount: Amount
    currency: CurrencyCode = "CNY"


class QuotaUpdate(WriteModel):
    amount: Amount | None = None
    currency: CurrencyCode | None = None


class QuotaRead(ReadModel):
    id: int
    external_id: str
    owner_id: int
    period: str
    starts_on: dt.date
    ends_on: dt.date
    amount: Decimal
    currency: str


class ActivityCreate(WriteModel):
    external_id: str | None = Field(default=None, max_length=80)
    kind: ActivityKind
    subject: ShortText
    body: str | None = Field(default=None, max_length=20000)
    account_id: int | None = None
    opportunity_id: int | None = None
    contact_id: int | None = None
    owner_id: int | None = None
    occurred_at: dt.datetime | None = None


class ActivityUpdate(WriteModel):
    subject: ShortText | None = None
    body: str | None = Field(default=None, max_length=20000)
    occurred_at: dt.datetime | None = None


class ActivityRead(ReadModel):
    id: int
    external_id: str | None
    kind: str
    subject: str
    body: str | None
    account_id: int | None
    opportunity_id: int | None
    contact_id: int | None
    owner_id: int | None
    occurred_at: dt.datetime
    created_at: dt.datetime


class StageDefinition(WriteModel):
    key: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,60}$")]
    name: ShortText
    name_en: ShortText
    probability: int = Field(ge=0, le=100)
    required_fields: list[str] = Field(default_factory=list)
    is_won: bool = False
    is_lost: bool = False


class PipelineDefinition(WriteModel):
    """A pipeline as written in YAML or sent to the API: stages in order."""

    key: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,60}$")]
    name: ShortText
    is_default: bool = False
    stages: list[StageDefinition] = Field(min_length=2)


class PipelineStageRead(ReadModel):
    id: int
    key: str
    name: str
    name_en: str
    position: int
    probability: int
    required_fields: list[str]
    is_won: bool
    is_lost: bool


class PipelineRead(ReadModel):
    id: int
    key: str
    name: str
    is_default: bool
    stages: list[PipelineStageRead]


class LineItemCreate(WriteModel):
    product_id: int
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    unit_price: Amount | None = None
    discount_percent: float = Field(default=0.0, ge=0, le=100)


class LineItemUpdate(WriteModel):
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    unit_price: Amount | None = None
    discount_percent: float | None = Field(default=None, ge=0, le=100)


class LineItemRead(ReadModel):
    id: int
    opportunity_id: int
    product_id: int
    quantity: int
    unit_price: Decimal
    discount_percent: float
    total: Decimal
