"""Templates and the locale-aware formatting of values on pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from waggle.crm.models import PipelineStage
from waggle.web.i18n import Translator

_environment = Environment(
    loader=PackageLoader("waggle.web", "templates"),
    autoescape=select_autoescape(("html",)),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# Pages load scripts and styles from this site only; nothing may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_WAN = Decimal(10_000)
_YI = Decimal(100_000_000)


def render(
    template: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with ``context`` into an HTML response."""
    html = _environment.get_template(template).render(**context)
    return HTMLResponse(
        html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )


class Formatter:
    """Format amounts, dates, stages and coded values for one locale."""

    def __init__(self, t: Translator, stages: Mapping[int, PipelineStage] | None):
        self.t = t
        self.stages = dict(stages or {})

    @property
    def is_chinese(self) -> bool:
        return self.t.locale == "zh-CN"

    def money(self, amount: Decimal | None, currency: str = "CNY") -> str:
        if amount is None:
            return "—"
        return f"{_currency_sign(currency)}{amount:,.2f}"

    def money_short(self, amount: Decimal | None, currency: str = "CNY") -> str:
        """Return a compact amount: 万/亿 in Chinese, K/M/B in English."""
        if amount is None:
            return "—"
        sign, value = _currency_sign(currency), Decimal(amount)
        if self.is_chinese:
            if abs(value) >= _YI:
                return f"{sign}{value / _YI:,.2f}亿"
            if abs(value) >= _WAN:
                return f"{sign}{value / _WAN:,.1f}万"
            return f"{sign}{value:,.0f}"
        for limit, suffix in ((Decimal(10**9), "B"), (Decimal(10**6), "M")):
            if abs(value) >= limit:
                return f"{sign}{value / limit:,.2f}{suffix}"
        if abs(value) >= 1000:
            return f"{sign}{value / 1000:,.1f}K"
        return f"{sign}{value:,.0f}"

    def date(self, value: dt.date | None) -> str:
        return value.isoformat() if value else "—"

    def datetime(self, value: dt.datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "—"

    def duration(self, seconds: int | None) -> str:
        if seconds is None:
            return "—"
        days, rest = divmod(max(seconds, 0), 86_400)
        hours, rest = divmod(rest, 3_600)
        if days:
            return self.t("duration.days_hours", days=days, hours=hours)
        return self.t("duration.hours_minutes", hours=hours, minutes=rest // 60)

    def stage(self, stage: PipelineStage | int | None) -> str:
        if isinstance(stage, int):
            stage = self.stages.get(stage)
        if stage is None:
            return "—"
        return stage.name if self.is_chinese else stage.name_en

    def coded(self, group: str, value: str | None) -> str:
        """Return the label of a coded value (status, decision role, kind…)."""
        if value is None or value == "":
            return "—"
        return self.t.optional(f"{group}.{value}") or value

    def field(self, name: str) -> str:
        return self.t.optional(f"field.{name}") or name

    def fields(self, names: list[str]) -> str:
        return self.t("list.separator").join(self.field(name) for name in names)

    def sort_label(self, sort: str) -> str:
        """Return the label of a sort order such as ``-amount``."""
        direction = "sort.desc" if sort.startswith("-") else "sort.asc"
        return self.t(direction, field=self.field(sort.lstrip("-")))

    def yes_no(self, value: bool | None) -> str:
        if value is None:
            return "—"
        return self.t("common.yes") if value else self.t("common.no")


def _currency_sign(currency: str) -> str:
    return "¥" if currency == "CNY" else f"{currency} "
