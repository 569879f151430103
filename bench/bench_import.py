"""Import throughput: 100,000 opportunities from CSV into SQLite and PostgreSQL.

For each database: migrate an empty database, install the default pipeline,
import the prerequisites (regions, departments, employees, 5,000 accounts and
one contact per account) and then time, through ``import_file`` (the service
``waggle import opportunities FILE`` calls) and the commit:

1. the first import of a generated CSV of opportunities (Chinese names; open
   deals in every stage, historical won and lost deals with their dates);
2. a re-import of the same file, which must count every row unchanged;
3. an export of the same rows to CSV (``export_records``, as ``waggle
   export``).

Rows per second are rows read divided by the wall time of the step. The
files are generated once, with a fixed seed, in a temporary directory.
PostgreSQL gets a throw-away database ``waggle_bench_<pid>`` that is dropped
afterwards; it is skipped when nothing answers at the admin URL.

Settings (environment):
    WAGGLE_BENCH_ROWS               opportunities in the file, default 100000
    WAGGLE_BENCH_IMPORT_ACCOUNTS    accounts imported first, default 5000
    WAGGLE_BENCH_IMPORT_BACKENDS    comma-separated, default ``sqlite,postgresql``
    WAGGLE_BENCH_IMPORT_PROFILE     ``1``: profile the first import (cProfile)
                                    and print where the time goes
    WAGGLE_TEST_POSTGRES_URL        admin URL, default postgres@127.0.0.1:5432
"""

from __future__ import annotations

import cProfile
import csv
import datetime as dt
import io
import os
import pstats
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from itertools import product
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.migrate import upgrade
from waggle.crm.exporting import ExportSummary, export_records
from waggle.crm.importing import ImportSummary, import_file
from waggle.crm.layouts import LAYOUTS
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.models import load_all_models

ROWS = int(os.environ.get("WAGGLE_BENCH_ROWS", "100000"))
ACCOUNTS = int(os.environ.get("WAGGLE_BENCH_IMPORT_ACCOUNTS", "5000"))
BACKENDS = os.environ.get("WAGGLE_BENCH_IMPORT_BACKENDS", "sqlite,postgresql")
PROFILE = os.environ.get("WAGGLE_BENCH_IMPORT_PROFILE", "") not in ("", "0")
POSTGRES_ADMIN_URL = os.environ.get(
    "WAGGLE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
EMPLOYEES = 200
SEED = 20260301
PREREQUISITES = ("regions", "departments", "employees", "accounts", "contacts")
ACTOR: Actor = system_actor("bench-import")
T = TypeVar("T")

REGIONS = {
    "east": ("华东大区", ("上海", "杭州", "南京", "苏州", "宁波", "合肥")),
    "north": ("华北大区", ("北京", "天津", "石家庄", "太原", "济南")),
    "south": ("华南大区", ("广州", "深圳", "厦门", "福州", "南宁")),
    "west": ("西部大区", ("成都", "重庆", "西安", "昆明", "贵阳")),
    "central": ("华中大区", ("武汉", "长沙", "郑州", "南昌")),
}
BRANDS = (
    "星河", "云帆", "天府", "华瑞", "恒通", "中远", "博海", "金桥", "新锐", "鼎盛",
    "汇丰", "东方", "远航", "凯达", "锦程", "瑞丰", "永泰", "长城", "海纳", "宏图",
    "天成", "明德", "安信", "卓越", "晨光", "福源", "嘉禾", "众诚", "银河", "泰和",
)  # fmt: skip
INDUSTRIES = (
    ("机械", "制造业"), ("电子", "制造业"), ("软件", "软件"), ("物流", "物流"),
    ("医药", "医药"), ("贸易", "贸易"), ("食品", "消费品"), ("化工", "化工"),
    ("建材", "建筑"), ("能源", "能源"), ("汽车零部件", "制造业"), ("纺织", "制造业"),
)  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾"
GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "涛", "明",
         "超", "秀英", "建华", "晓东", "丽娟", "志强", "海燕", "文博")  # fmt: skip
TITLES = ("总经理", "采购总监", "技术总监", "财务经理", "IT 经理", "生产部长")
ROLES = ("decision_maker", "influencer", "technical", "procurement", "finance")
PRODUCTS = ("云服务", "产线改造", "数据平台", "安全网关", "ERP 升级", "智能仓储",
            "设备维保", "培训服务", "视频会议", "能耗监测")  # fmt: skip
KINDS = ("项目", "采购", "试点", "框架协议", "续约")
SOURCES = ("展会", "官网", "转介绍", "电话营销", "渠道", "老客户")
LOSS_REASONS = ("价格过高", "竞争对手中标", "预算取消", "需求变更", "决策延期")
PAIN_POINTS = ("产线效率低，停机频繁", "数据分散在多个系统", "库存周转慢",
               "合规审计压力大", "人工成本上升")  # fmt: skip
OPEN_STAGES = ("lead", "discovery", "solution", "negotiation", "contract")
OPPORTUNITY_HEADER = list(LAYOUTS["opportunities"].order)


@dataclass(frozen=True)
class Timed:
    """One timed step: what it did, how long it took, over how many rows."""

    label: str
    seconds: float
    rows: int
    detail: str

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def main() -> None:
    print(
        f"{ROWS} opportunities over {ACCOUNTS} accounts and {EMPLOYEES} employees; "
        "each step is one transaction through the CLI's service, commit included"
    )
    with tempfile.TemporaryDirectory(prefix="waggle-bench-import-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        files = write_files(folder)
        size = files["opportunities"].stat().st_size / 2**20
        print(
            f"generated the CSV files in {time.perf_counter() - started:.1f} s "
            f"(opportunities.csv: {size:.1f} MiB, UTF-8)"
        )
        load_all_models()
        for backend in [b.strip() for b in BACKENDS.split(",") if b.strip()]:
            with scratch_database(backend, folder) as url:
                if url is None:
                    print(f"\n[{backend}] skipped: PostgreSQL does not answer")
                    continue
                bench_backend(backend, url, files, folder)


# Databases ------------------------------------------------------------------


@contextmanager
def scratch_database(backend: str, folder: Path) -> Iterator[str | None]:
    """Yield the URL of an empty database (``None``: the backend is unavailable)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    if backend != "postgresql":
        raise SystemExit(f"unknown backend {backend!r}; use sqlite or postgresql")
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"waggle_bench_{os.getpid()}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        yield None
        return
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_backend(backend: str, url: str, files: dict[str, Path], folder: Path) -> None:
    print(f"\n[{backend}]")
    started = time.perf_counter()
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        with transaction(sessions) as session:
            ensure_default_pipeline(session, ACTOR)
        print(f"  migrate + default pipeline   {time.perf_counter() - started:8.2f} s")
        for resource in PREREQUISITES:
            summary, seconds = timed_import(sessions, resource, files[resource])
            show(Timed(f"prerequisite {resource}", seconds, summary.rows_read,
                       reconciled(summary)))  # fmt: skip
        run_opportunities(sessions, engine, files["opportunities"], folder)
    finally:
        engine.dispose()


def run_opportunities(
    sessions: sessionmaker[Session], engine: Engine, path: Path, folder: Path
) -> None:
    first, seconds = timed_import(sessions, "opportunities", path, profile=PROFILE)
    show(Timed("import opportunities", seconds, first.rows_read, reconciled(first)))
    check(first, inserted=ROWS)

    again, seconds = timed_import(sessions, "opportunities", path)
    show(Timed("re-import (same file)", seconds, again.rows_read, reconciled(again)))
    check(again, unchanged=ROWS)

    exported, seconds = timed_export(sessions, folder / "export.csv")
    size = (folder / "export.csv").stat().st_size / 2**20
    show(Timed("export opportunities (CSV)", seconds, exported.rows,
               f"{exported.rows} rows, {size:.1f} MiB"))  # fmt: skip
    if exported.rows != ROWS:
        print(f"  !! export wrote {exported.rows} rows, expected {ROWS}")
    if engine.dialect.name == "sqlite":
        database = Path(str(engine.url.database))
        print(
            f"  database file                {database.stat().st_size / 2**20:8.1f} MiB"
        )


# Timed steps ------------------------------------------------------------------


def timed_import(
    sessions: sessionmaker[Session], resource: str, path: Path, *, profile: bool = False
) -> tuple[ImportSummary, float]:
    """Import ``path`` as the CLI does (read, import, commit); return the seconds."""

    def step() -> ImportSummary:
        data = path.read_bytes()
        with transaction(sessions) as session:
            return import_file(session, ACTOR, resource, data, filename=path.name)

    return measure(step, profile=profile)


def timed_export(
    sessions: sessionmaker[Session], path: Path
) -> tuple[ExportSummary, float]:
    def step() -> ExportSummary:
        with transaction(sessions) as session, path.open("wb") as target:
            return export_records(session, ACTOR, "opportunities", target)

    return measure(step)


def measure(step: Callable[[], T], *, profile: bool = False) -> tuple[T, float]:
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = step()
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler is not None:
        print_profile(profiler)
    return result, seconds


def print_profile(profiler: cProfile.Profile) -> None:
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats(order)
        stats.print_stats(25)
        print(f"  --- profile of the first import, by {order} (under cProfile)")
        lines = buffer.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        for line in lines[start:]:
            if line.strip():
                print(f"  {line}")


def reconciled(summary: ImportSummary) -> str:
    mark = "" if summary.reconciles else "  (MISMATCH)"
    return (
        f"read {summary.rows_read} = inserted {summary.inserted} + updated "
        f"{summary.updated} + unchanged {summary.unchanged} + rejected "
        f"{summary.rejected}{mark}"
    )


def check(summary: ImportSummary, *, inserted: int = 0, unchanged: int = 0) -> None:
    expected = (ROWS, inserted, 0, unchanged, 0)
    got = (
        summary.rows_read,
        summary.inserted,
        summary.updated,
        summary.unchanged,
        summary.rejected,
    )
    if got != expected or not summary.reconciles:
        print(f"  !! expected read/ins/upd/same/rej {expected}, got {got}")


def show(step: Timed) -> None:
    print(
        f"  {step.label:<28} {step.seconds:8.2f} s {step.rate:10.0f} rows/s   "
        f"{step.detail}",
        flush=True,
    )


# Files --------------------------------------------------------------------------


def write_files(folder: Path) -> dict[str, Path]:
    """Write every file the bench imports; return their paths by resource."""
    rng = random.Random(SEED)
    anchor = dt.datetime.now(dt.UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    ) - dt.timedelta(days=1)
    employees = [f"E{n:04d}" for n in range(EMPLOYEES)]
    accounts = account_rows(rng, employees)
    tables = {
        "regions": region_rows(),
        "departments": [
            ["code", "name", "parent_code"],
            ["sales", "销售部", ""],
            ["presales", "售前部", "sales"],
        ],
        "employees": employee_rows(rng, employees),
        "accounts": accounts,
        "contacts": contact_rows(rng, accounts),
        "opportunities": opportunity_rows(rng, accounts, anchor),
    }
    paths = {}
    for resource, rows in tables.items():
        paths[resource] = folder / f"{resource}.csv"
        with paths[resource].open("w", encoding="utf-8", newline="") as target:
            csv.writer(target, lineterminator="\r\n").writerows(rows)
    return paths


def region_rows() -> list[list[str]]:
    rows = [["code", "name", "parent_code"], ["cn", "中国区", ""]]
    rows += [[code, name, "cn"] for code, (name, _) in REGIONS.items()]
    return rows


def person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def employee_rows(rng: random.Random, employees: list[str]) -> list[list[str]]:
    header = ["external_id", "name", "email", "department_code", "region_code",
              "manager_external_id", "title", "status", "hired_on"]  # fmt: skip
    rows = [header]
    regions = list(REGIONS)
    for index, key in enumerate(employees):
        manager = "" if index == 0 else employees[0 if index < 10 else index % 10]
        title = "销售总监" if index == 0 else "销售经理" if index < 10 else "客户经理"
        hired = dt.date(2015, 1, 5) + dt.timedelta(days=rng.randrange(3650))
        rows.append([key, person(rng), f"{key.lower()}@example.cn", "sales",
                     regions[index % len(regions)], manager, title, "active",
                     hired.isoformat()])  # fmt: skip
    return rows


def account_rows(rng: random.Random, employees: list[str]) -> list[list[str]]:
    """Accounts with distinct company names (the importer refuses 撞单)."""
    header = ["external_id", "name", "owner_external_id", "industry", "region_code",
              "province", "city", "phone", "created_at"]  # fmt: skip
    places = [(code, city) for code, (_, cities) in REGIONS.items() for city in cities]
    combinations = list(product(places, BRANDS, INDUSTRIES))
    if len(combinations) < ACCOUNTS:
        raise SystemExit(f"at most {len(combinations)} distinct accounts")
    rng.shuffle(combinations)
    rows = [header]
    for index, ((region, city), brand, (trade, industry)) in enumerate(
        combinations[:ACCOUNTS]
    ):
        created = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
            minutes=rng.randrange(1_000_000)
        )
        rows.append([f"A{index:05d}", f"{city}{brand}{trade}有限公司",
                     employees[10 + index % (len(employees) - 10)], industry,
                     region, city, city, f"0{rng.randrange(10, 999)}-5555 {index:04d}",
                     created.isoformat()])  # fmt: skip
    return rows


def contact_rows(rng: random.Random, accounts: list[list[str]]) -> list[list[str]]:
    """One contact per account, ``C`` + the account number (the decision maker)."""
    rows = [["external_id", "account_external_id", "name", "title", "decision_role",
             "phone"]]  # fmt: skip
    for account in accounts[1:]:
        number = account[0][1:]
        rows.append([f"C{number}", account[0], person(rng), rng.choice(TITLES),
                     rng.choice(ROLES), f"138{rng.randrange(10**8):08d}"])  # fmt: skip
    return rows


def opportunity_rows(
    rng: random.Random, accounts: list[list[str]], anchor: dt.datetime
) -> list[list[str]]:
    rows = [OPPORTUNITY_HEADER]
    for index in range(ROWS):
        account = accounts[1 + index % ACCOUNTS]
        values = opportunity(rng, index, account, anchor)
        rows.append([values.get(name, "") for name in OPPORTUNITY_HEADER])
    return rows


def opportunity(
    rng: random.Random, index: int, account: list[str], anchor: dt.datetime
) -> dict[str, str]:
    """One valid row: about 45% open (every stage), 30% won, 25% lost."""
    created = anchor - dt.timedelta(minutes=rng.randrange(30 * 1440, 4 * 365 * 1440))
    draw = rng.random()
    stage = "won" if draw < 0.30 else "lost" if draw < 0.55 else rng.choice(OPEN_STAGES)
    city = account[6]
    values = {
        "external_id": f"O{index:07d}",
        "name": f"{city}{rng.choice(PRODUCTS)}{rng.choice(KINDS)}（{index + 1}期）",
        "account_external_id": account[0],
        "owner_external_id": account[2],
        "pipeline_key": "standard",
        "stage_key": stage,
        "amount": str(Decimal(rng.randrange(5_000_00, 5_000_000_00)) / 100),
        "currency": "CNY",
        "created_at": created.isoformat(),
        "source": rng.choice(SOURCES),
        "budget_confirmed": "true" if rng.random() < 0.6 else "false",
    }
    if stage in ("won", "lost"):
        closed = created + (anchor - created) * rng.uniform(0.05, 1.0)
        closed = closed.replace(microsecond=0)
        values |= {
            "status": stage,
            "closed_at": closed.isoformat(),
            "stage_entered_at": closed.isoformat(),
            "expected_close_on": closed.date().isoformat(),
            "forecast_category": "closed" if stage == "won" else "omitted",
        }
        if stage == "lost":
            values["loss_reason"] = rng.choice(LOSS_REASONS)
        return values
    return values | open_values(rng, stage, account, created, anchor)


def open_values(
    rng: random.Random,
    stage: str,
    account: list[str],
    created: dt.datetime,
    anchor: dt.datetime,
) -> dict[str, str]:
    """What an open deal in ``stage`` carries, meeting the stage's requirements."""
    entered = created + (anchor - created) * rng.uniform(0.0, 1.0)
    values = {
        "status": "open",
        "stage_entered_at": entered.replace(microsecond=0).isoformat(),
        "forecast_category": rng.choice(("pipeline", "best_case", "commit")),
        "expected_close_on": (
            anchor.date() + dt.timedelta(days=rng.randrange(7, 365))
        ).isoformat(),
    }
    if rng.random() < 0.3:
        values["manual_probability"] = str(rng.randrange(0, 101, 5))
    if stage in ("solution", "negotiation", "contract"):
        values["customer_pain_points"] = rng.choice(PAIN_POINTS)
        values["decision_maker_contact_external_id"] = f"C{account[0][1:]}"
    if stage in ("negotiation", "contract"):
        values["budget_confirmed"] = "true"
    return values
