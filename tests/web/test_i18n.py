"""Both catalogues hold the same keys, and every key the UI uses exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

from waggle.crm.models import (
    ActivityKind,
    DecisionRole,
    ForecastCategory,
    OpportunityStatus,
)
from waggle.identity.models import Role
from waggle.web import lists
from waggle.web.i18n import EN, ZH_CN
from waggle.web.pipeline_form import REQUIRABLE_FIELDS, STAGE_KINDS

WEB = Path(lists.__file__).parent
# A literal key: t("area.name") or t("area.name", ...); not t("prefix_" ~ value).
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-zA-Z0-9_.\-]+)["']\s*[,)]""")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _used_keys() -> set[str]:
    sources = [*WEB.glob("templates/*.html"), *WEB.glob("*.py")]
    text = "\n".join(path.read_text(encoding="utf-8") for path in sources)
    keys = set(LITERAL_KEY.findall(text))
    keys |= set(re.findall(r'"(nav\.[a-z_]+)"', text))
    return keys


def test_both_catalogues_have_the_same_keys() -> None:
    """zh-CN and en translate exactly the same keys."""
    assert sorted(set(ZH_CN) ^ set(EN)) == []


def test_both_languages_fill_the_same_placeholders() -> None:
    """A string takes the same named fields in both languages."""
    differing = [
        key for key in ZH_CN if _placeholders(ZH_CN[key]) != _placeholders(EN[key])
    ]

    assert differing == []


def test_every_key_used_by_pages_exists() -> None:
    """Templates and handlers only ask for keys the catalogues define."""
    missing = sorted(_used_keys() - set(ZH_CN))

    assert missing == []
    assert len(_used_keys()) > 150


def test_every_coded_value_has_a_label() -> None:
    """Statuses, roles, kinds, sort fields and requirable fields all have labels."""
    groups = {
        "status": [s.value for s in OpportunityStatus],
        "forecast": [c.value for c in ForecastCategory],
        "decision_role": [r.value for r in DecisionRole],
        "role": [r.value for r in Role],
        "timeline": [k.value for k in ActivityKind] + ["stage_change"],
        "field": [
            *REQUIRABLE_FIELDS,
            *(
                sort.lstrip("-")
                for view in (
                    lists.OPPORTUNITY_LIST,
                    lists.ACCOUNT_LIST,
                    lists.CONTACT_LIST,
                )
                for sort in view.sorts
            ),
        ],
        "pipeline": [f"kind_{kind}" for kind in STAGE_KINDS],
    }

    missing = [
        f"{group}.{value}"
        for group, values in groups.items()
        for value in values
        if f"{group}.{value}" not in ZH_CN
    ]

    assert missing == []
