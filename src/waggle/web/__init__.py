"""Server-rendered pages (Jinja2 + HTMX, charts with ECharts) and static assets."""

from fastapi import FastAPI


def install_web(app: FastAPI) -> None:
    """Mount the pages and static assets on ``app``."""
    from waggle.web.pages import install

    install(app)


__all__ = ["install_web"]
