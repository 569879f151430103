"""User-facing strings of one area of pages, in zh-CN and en.

Merged into :data:`waggle.web.i18n.CATALOGUES`; both dictionaries hold the
same keys (a test checks it).
"""

from __future__ import annotations

ZH_CN: dict[str, str] = {}

EN: dict[str, str] = {}
