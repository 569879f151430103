"""Tables of forecasts and customer health."""

from __future__ import annotations
