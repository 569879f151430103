"""The board in headless Chromium against a live server: drag, reload, refusal.

Debian's ``chromium`` package drives it (``scripts/ensure-system-packages.sh``
installs it); Playwright only talks to it, it never downloads a browser.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.factories import PASSWORD, build_org
from tests.web.helpers import seed_deals, stage_ids
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, serve_in_thread
from waggle.app import create_app
from waggle.core.actor import system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.settings import Settings
from waggle.crm.pipelines import ensure_default_pipeline

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A seeded SQLite company served by uvicorn on a free loopback port."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/ensure-system-packages.sh")
    directory = tmp_path_factory.mktemp("browser")
    shutil.copy(sqlite_template, directory / "waggle.db")
    url = f"sqlite:///{directory / 'waggle.db'}"
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        ensure_default_pipeline(session, system_actor("test"))
    deals = seed_deals(sessions, build_org(sessions))
    app = create_app(
        Settings(database_url=url, data_dir=directory, secret_key="browser-secret")
    )
    with serve_in_thread(app) as base_url:
        yield {"url": base_url, "deals": deals, "stages": stage_ids(sessions)}
    app.state.engine.dispose()
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, site: dict[str, Any]) -> Iterator[Page]:
    """A logged-in page of rep_a1, failing the test on any console error.

    The one expected error is Chromium's note on the 422 of a refused move.
    """
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.goto(site["url"] + "/login")
    opened.fill('input[name="username"]', "rep_a1")
    opened.fill('input[name="password"]', PASSWORD)
    opened.click('button[type="submit"]')
    opened.wait_for_url(site["url"] + "/")
    yield opened
    context.close()
    assert [e for e in errors if "status of 422" not in e] == []


def _card_in(page: Page, stage_id: int, opportunity_id: int) -> Locator:
    column = f'.cards[data-stage-id="{stage_id}"]'
    return page.locator(f'{column} .card[data-opportunity-id="{opportunity_id}"]')


def _drag(page: Page, card: Locator, target: Locator) -> None:
    """Drag with real mouse events (Sortable's fallback mode listens to them)."""
    start, goal = card.bounding_box(), target.bounding_box()
    assert start is not None and goal is not None
    x, y = start["x"] + start["width"] / 2, start["y"] + start["height"] - 8
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 12, y + 12, steps=4)
    page.mouse.move(goal["x"] + goal["width"] / 2, goal["y"] + 24, steps=20)
    page.mouse.up()


def test_dashboard_draws_the_chart_from_local_echarts(
    page: Page, site: dict[str, Any]
) -> None:
    """The home page renders the stage chart as a canvas, with no CDN."""
    expect(page.locator("#stage-chart canvas")).to_have_count(1)


def test_drag_moves_a_card_and_a_refused_drag_snaps_back(
    page: Page, site: dict[str, Any]
) -> None:
    """A card dragged to 需求分析 stays after reload; one dragged on to 方案确认
    is refused with the missing fields named and stays where it was."""
    deal, stages = site["deals"]["deal_a1"], site["stages"]
    page.goto(site["url"] + "/board")
    expect(_card_in(page, stages["lead"], deal)).to_be_visible()

    _drag(
        page,
        _card_in(page, stages["lead"], deal),
        page.locator(f'.cards[data-stage-id="{stages["discovery"]}"]'),
    )
    expect(page.locator("#board-message.success")).to_have_text(
        "「二期产线改造」已进入「需求分析」"
    )
    page.reload()

    expect(_card_in(page, stages["discovery"], deal)).to_be_visible()
    expect(_card_in(page, stages["lead"], deal)).to_have_count(0)

    _drag(
        page,
        _card_in(page, stages["discovery"], deal),
        page.locator(f'.cards[data-stage-id="{stages["solution"]}"]'),
    )
    expect(page.locator("#board-message.error")).to_have_text(
        "进入「方案确认」前需要填写：客户痛点、决策人"
    )
    expect(_card_in(page, stages["discovery"], deal)).to_be_visible()
    expect(_card_in(page, stages["solution"], deal)).to_have_count(0)
    page.reload()
    expect(_card_in(page, stages["discovery"], deal)).to_be_visible()
