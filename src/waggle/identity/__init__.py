"""Identity owns users, roles, API tokens and login, and the org chart:
regions, departments, employees with their managers and employment status."""

from waggle.identity.models import (
    ApiToken,
    Department,
    Employee,
    EmploymentStatus,
    Region,
    Role,
    User,
    UserRole,
)
from waggle.identity.service import (
    IssuedToken,
    actor_for_token,
    actor_for_user,
    authenticate,
    create_token,
    create_user,
)

__all__ = [
    "ApiToken",
    "Department",
    "Employee",
    "EmploymentStatus",
    "IssuedToken",
    "Region",
    "Role",
    "User",
    "UserRole",
    "actor_for_token",
    "actor_for_user",
    "authenticate",
    "create_token",
    "create_user",
]
