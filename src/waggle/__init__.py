"""Waggle: a self-hosted sales-management platform.

Bounded contexts live in sub-packages (``core``, ``identity``, ``crm``,
``governance`` and the rest); ``app`` mounts their HTTP routers and ``cli``
their commands.
"""

__version__ = "0.1.0"
