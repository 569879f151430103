"""Governance owns access policy, the audit log and (later) classification,
lineage, retention, signed exports and the sovereignty drill.

Every business context calls the seam exported here; governance never calls
back into a business context.
"""

from waggle.governance.guard import (
    active_policy,
    authorize,
    configure_policy,
    ensure_in_scope,
    record_audit,
    record_denial,
    row_filter,
    visible_owner_ids,
)
from waggle.governance.models import AuditEntry

__all__ = [
    "AuditEntry",
    "active_policy",
    "authorize",
    "configure_policy",
    "ensure_in_scope",
    "record_audit",
    "record_denial",
    "row_filter",
    "visible_owner_ids",
]
