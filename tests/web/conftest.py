"""Fixtures of the web tests."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.web.helpers import seed_deals


@pytest.fixture
def deals(sessions: sessionmaker[Session], org: Org) -> dict[str, int]:
    return seed_deals(sessions, org)
