"""API shapes of the org chart and of users and tokens."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from waggle.identity.models import EmploymentStatus, Role

Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,40}$")]
Name = Annotated[str, Field(min_length=1, max_length=120)]


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RegionCreate(_Write):
    code: Code
    name: Name
    parent_id: int | None = None


class RegionUpdate(_Write):
    name: Name | None = None
    parent_id: int | None = None


class RegionRead(_Read):
    id: int
    code: str
    name: str
    parent_id: int | None


class DepartmentCreate(_Write):
    code: Code
    name: Name
    parent_id: int | None = None


class DepartmentUpdate(_Write):
    name: Name | None = None
    parent_id: int | None = None


class DepartmentRead(_Read):
    id: int
    code: str
    name: str
    parent_id: int | None


class EmployeeCreate(_Write):
    external_id: Annotated[str, Field(min_length=1, max_length=80)]
    name: Name
    email: str | None = Field(
        default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$"
    )
    phone: str | None = Field(default=None, max_length=40)
    title: str | None = Field(default=None, max_length=120)
    department_id: int | None = None
    region_id: int | None = None
    manager_id: int | None = None
    status: EmploymentStatus = EmploymentStatus.ACTIVE
    hired_on: dt.date | None = None
    departed_on: dt.date | None = None


class EmployeeUpdate(_Write):
    name: Name | None = None
    email: str | None = Field(
        default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$"
    )
    phone: str | None = Field(default=None, max_length=40)
    title: str | None = Field(default=None, max_length=120)
    department_id: int | None = None
    region_id: int | None = None
    manager_id: int | None = None
    status: EmploymentStatus | None = None
    hired_on: dt.date | None = None
    departed_on: dt.date | None = None


class EmployeeRead(_Read):
    id: int
    external_id: str
    name: str
    email: str | None
    phone: str | None
    title: str | None
    department_id: int | None
    region_id: int | None
    manager_id: int | None
    status: str
    hired_on: dt.date | None
    departed_on: dt.date | None


class UserCreate(_Write):
    username: Annotated[str, Field(min_length=1, max_length=80)]
    password: Annotated[str, Field(min_length=8, max_length=200)]
    roles: list[Role] = Field(min_length=1)
    employee_external_id: str | None = None
    locale: Annotated[str, Field(pattern=r"^(zh-CN|en)$")] = "zh-CN"


class UserUpdate(_Write):
    password: Annotated[str, Field(min_length=8, max_length=200)] | None = None
    roles: list[Role] | None = Field(default=None, min_length=1)
    locale: Annotated[str, Field(pattern=r"^(zh-CN|en)$")] | None = None
    is_active: bool | None = None


class UserRead(_Read):
    id: int
    username: str
    employee_id: int | None
    locale: str
    is_active: bool
    role_names: list[str]


class TokenCreate(_Write):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    username: str | None = None


class TokenRead(_Read):
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenIssued(BaseModel):
    id: int
    name: str
    token: str = Field(description="The secret; shown only in this response.")
