"""The ``waggle demo`` command: build the demo company into the configured database."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from waggle.core.actor import system_actor
from waggle.core.errors import UpstreamFailure
from waggle.demo.builder import (
    DEFAULT_SEED,
    DemoResult,
    build_demo_company,
    holds_employees,
)
from waggle.demo.generator import DemoCompany
from waggle.demo.orgchart import Login

LOGINS_HELP = (
    "Logins (user / password / role): "
    "demo / waggle-demo / sales_ops (sees everything); "
    "director / waggle-director / director (华东大区); "
    "manager / waggle-manager / manager (华东一区); "
    "rep / waggle-rep / rep; "
    "dataowner / waggle-dataowner / data_owner; "
    "compliance / waggle-compliance / compliance; "
    "auditor / waggle-auditor / auditor; "
    "itadmin / waggle-itadmin / it_admin."
)

TABLE_LABELS = {
    "regions": "大区 regions",
    "departments": "部门 departments",
    "employees": "员工 employees",
    "products": "产品 products",
    "accounts": "客户 accounts",
    "contacts": "联系人 contacts",
    "opportunities": "商机 opportunities",
    "line_items": "产品明细 line items",
    "stage_changes": "阶段变更 stage changes",
    "quotas": "配额 quotas",
    "activities": "跟进记录 activities",
    "pool_events": "公海记录 pool events",
}


def register_commands(app: typer.Typer) -> None:
    """Add ``waggle demo`` to the ``waggle`` command."""
    app.command("demo", epilog=LOGINS_HELP)(demo)


def demo(
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same company.")
    ] = DEFAULT_SEED,
    scale: Annotated[
        float, typer.Option(help="1.0 = 5,000 accounts and 20,000 opportunities.")
    ] = 1.0,
    if_empty: Annotated[
        bool,
        typer.Option(
            "--if-empty", help="Do nothing if the database already has employees."
        ),
    ] = False,
) -> None:
    """Build the demo company (演示公司): an org chart of about 300 people,
    5,000 Chinese customer companies and 20,000 opportunities over two years,
    with one login per role.
    """
    from waggle.cli import out, session_scope

    started = time.perf_counter()
    with session_scope() as session:
        if if_empty and _holds_employees(session):
            out.print("demo: the database already holds employees; nothing to do")
            return
        with _ProgressDisplay() as progress:
            result = build_demo_company(
                session,
                system_actor("demo"),
                seed=seed,
                scale=scale,
                on_generated=progress.generated,
                on_rows=progress.advance,
            )
    _report(result, time.perf_counter() - started)


def _holds_employees(session: Session) -> bool:
    try:
        return holds_employees(session)
    except DBAPIError as exc:
        raise UpstreamFailure(
            "demo: the database has no Waggle schema; run `waggle db upgrade` first"
        ) from exc


class _ProgressDisplay:
    """Shows generation, then rows written, on the terminal with Rich."""

    def __init__(self) -> None:
        from waggle.cli import console

        self.bar = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("生成数据 generating", total=None)

    def __enter__(self) -> _ProgressDisplay:
        self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()

    def generated(self, company: DemoCompany) -> None:
        self.bar.update(
            self.task, description="写入 writing", total=company.total_rows, completed=0
        )

    def advance(self, table: str, rows: int) -> None:
        self.bar.update(
            self.task, description=TABLE_LABELS.get(table, table), advance=rows
        )


def _report(result: DemoResult, seconds: float) -> None:
    from waggle.cli import out

    counts = Table(
        title=f"演示公司 demo company (seed {result.seed}, scale {result.scale})"
    )
    counts.add_column("table")
    counts.add_column("rows", justify="right")
    for table, count in result.counts.items():
        counts.add_row(TABLE_LABELS.get(table, table), f"{count:,}")
    out.print(counts)
    out.print(_logins_table(result.logins))
    out.print(f"built in {seconds:.1f} s")


def _logins_table(logins: list[Login]) -> Table:
    table = Table(title="登录 logins")
    for column in ("user", "password", "role", "who"):
        table.add_column(column)
    for login in logins:
        table.add_row(login.username, login.password, login.role, login.description)
    return table
