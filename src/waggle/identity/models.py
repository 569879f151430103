"""Tables of people: the org chart (regions, departments, employees) and logins."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from waggle.core.clock import now
from waggle.core.db import Base, UtcDateTime


class Role(enum.StrEnum):
    """The roles a user may hold; policies and separation of duties key on them."""

    REP = "rep"
    MANAGER = "manager"
    DIRECTOR = "director"
    SALES_OPS = "sales_ops"
    DATA_OWNER = "data_owner"
    IT_ADMIN = "it_admin"
    COMPLIANCE = "compliance"
    AUDITOR = "auditor"


class EmploymentStatus(enum.StrEnum):
    ACTIVE = "active"
    ON_LEAVE = "on_leave"
    DEPARTED = "departed"


class Region(Base):
    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))


class Employee(Base):
    """A person in the org chart; owner of accounts and opportunities."""

    __tablename__ = "employees"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str | None] = mapped_column(String(120))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    status: Mapped[str] = mapped_column(String(20), default=EmploymentStatus.ACTIVE)
    hired_on: Mapped[dt.date | None] = mapped_column(Date)
    departed_on: Mapped[dt.date | None] = mapped_column(Date)

    department: Mapped[Department | None] = relationship()
    region: Mapped[Region | None] = relationship()

    __table_args__ = (Index("ix_employees_manager", "manager_id"),)


class User(Base):
    """A login. Most users are employees; service accounts need not be."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    locale: Mapped[str] = mapped_column(String(10), default="zh-CN")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    roles: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    employee: Mapped[Employee | None] = relationship()

    @property
    def role_names(self) -> list[str]:
        return sorted(role.role for role in self.roles)


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(30), primary_key=True)


class ApiToken(Base):
    """A bearer token; only its SHA-256 digest is stored, the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship()

    __table_args__ = (UniqueConstraint("user_id", "name"),)
