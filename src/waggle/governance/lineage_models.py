"""Tables of lineage: the stored provenance of figures."""

from __future__ import annotations
