"""Connectors: one module per source format, each turning raw records into drafts.

Every connector is a class taking its configuration mapping (validated in its
constructor, raising ``InvalidInput`` for a bad one) with a ``name`` and a pure
``parse(record) -> list[EventDraft]``. A module that reads files also offers
``read_records(path) -> Iterator[RawRecord]``, splitting a file into the raw
records that are kept verbatim (a JSON line, a CSV row as a JSON object, one
message of an mbox).

The registry maps a connector name to ``module:Class`` and imports lazily, so
starting Waggle does not import every parser (and its libraries).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from waggle.core.errors import InvalidInput
from waggle.signals.events import Connector, RawRecord

REGISTRY: dict[str, str] = {
    "wecom_archive": "waggle.signals.connectors.wecom:WeComArchiveConnector",
    "wecom_callback": "waggle.signals.connectors.wecom:WeComCallbackConnector",
    "dingtalk_callback": "waggle.signals.connectors.dingtalk:DingTalkCallbackConnector",
    "dingtalk_messages": "waggle.signals.connectors.dingtalk:DingTalkMessageConnector",
    "feishu_events": "waggle.signals.connectors.feishu:FeishuEventConnector",
    "feishu_messages": "waggle.signals.connectors.feishu:FeishuMessageConnector",
    "email": "waggle.signals.connectors.email:EmailConnector",
    "asterisk_cdr": "waggle.signals.connectors.calls:AsteriskCdrConnector",
    "calls_csv": "waggle.signals.connectors.calls:CallCsvConnector",
    "ics": "waggle.signals.connectors.meetings:CalendarConnector",
    "minutes": "waggle.signals.connectors.meetings:MinutesConnector",
    "gps": "waggle.signals.connectors.visits:VisitConnector",
    "materials": "waggle.signals.connectors.materials:MaterialViewConnector",
    "crm": "waggle.signals.connectors.crm:CrmChangeConnector",
    "generic": "waggle.signals.connectors.generic:GenericEventConnector",
}


def connector_names() -> list[str]:
    """Return the registered connector names, sorted."""
    return sorted(REGISTRY)


def build_connector(name: str, config: Mapping[str, Any] | None = None) -> Connector:
    """Instantiate the connector ``name`` with ``config``.

    Raises:
        InvalidInput: no connector has that name, or the configuration is bad.
    """
    factory = cast(Callable[[Mapping[str, Any]], Connector], _load(name))
    return factory(dict(config or {}))


def read_records(
    name: str, path: Path, config: Mapping[str, Any] | None = None
) -> Iterator[RawRecord]:
    """Split the file at ``path`` into raw records the way connector ``name`` reads.

    Raises:
        InvalidInput: the connector does not read files, or the file is unusable.
    """
    module = importlib.import_module(_target(name)[0])
    reader = getattr(module, "read_records", None)
    if reader is None:
        raise InvalidInput(f"connector {name!r} does not read files", connector=name)
    return cast(Iterator[RawRecord], reader(path, dict(config or {})))


def _target(name: str) -> tuple[str, str]:
    if name not in REGISTRY:
        raise InvalidInput(
            f"unknown connector {name!r}; expected one of "
            f"{', '.join(connector_names())}",
            connector=name,
        )
    module, _, attribute = REGISTRY[name].partition(":")
    return module, attribute


def _load(name: str) -> Any:
    module, attribute = _target(name)
    return getattr(importlib.import_module(module), attribute)


__all__ = ["REGISTRY", "build_connector", "connector_names", "read_records"]
