"""The actor: who is making a request, as every service call receives it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """The authenticated caller of a service, with where the call came from."""

    user_id: int | None
    username: str
    roles: frozenset[str]
    employee_id: int | None = None
    source_ip: str | None = None
    request_id: str | None = None
    channel: str = "api"

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


def system_actor(purpose: str = "system") -> Actor:
    """Return the actor used by Waggle's own jobs (demo builder, schedulers).

    It holds every business role so that policy checks pass, and is still
    audited under its own name.
    """
    return Actor(
        user_id=None,
        username=purpose,
        roles=frozenset({"sales_ops", "it_admin"}),
        channel="system",
    )
