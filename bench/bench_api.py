"""API latency under load: list and get of opportunities at 50 concurrent clients.

Builds the demo company into a scratch database (SQLite, and PostgreSQL when
it answers at 127.0.0.1:5432), serves it with ``waggle serve`` (uvicorn, one
process) on a free loopback port, and drives it with 50 concurrent asyncio
clients (httpx2, keep-alive) for a fixed number of requests per scenario.
Prints p50/p99 latency and throughput per scenario. The client runs on the
same two cores as the server, so the figures are conservative.

Settings (environment):
    WAGGLE_BENCH_API_BACKENDS   comma-separated, default ``sqlite,postgresql``
    WAGGLE_BENCH_API_REQUESTS   requests per scenario, default 1000 (lists)
                                and three times that for gets
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from bench import (
    free_port,
    percentile,
    stop_process_group,
    waggle_executable,
    wait_for_http,
)

CONCURRENCY = 50
WARM_UP_REQUESTS = 100
POSTGRES_ADMIN_URL = os.environ.get(
    "WAGGLE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True)
class Scenario:
    label: str
    username: str
    paths: list[str]


@dataclass(frozen=True)
class Outcome:
    """Latencies of the successful (200) responses and a count of every result."""

    requests: int
    seconds: float
    latencies: list[float]
    results: Counter[str]

    @property
    def errors(self) -> int:
        return self.requests - self.results["200"]

    @property
    def throughput(self) -> float:
        """Successful responses per second."""
        return len(self.latencies) / self.seconds


def main() -> None:
    backends = os.environ.get("WAGGLE_BENCH_API_BACKENDS", "sqlite,postgresql")
    requests = int(os.environ.get("WAGGLE_BENCH_API_REQUESTS", "1000"))
    print(
        f"{CONCURRENCY} concurrent clients, {requests} list / {3 * requests} get "
        "requests per scenario after a warm-up; client and server share the cores"
    )
    for backend in [name.strip() for name in backends.split(",") if name.strip()]:
        with (
            tempfile.TemporaryDirectory(prefix="waggle-bench-api-") as scratch,
            _database(backend, Path(scratch)) as url,
        ):
            if url is None:
                print(f"\n[{backend}] skipped: PostgreSQL does not answer")
                continue
            _bench_backend(backend, url, Path(scratch), requests)


@contextmanager
def _database(backend: str, scratch: Path) -> Iterator[str | None]:
    """Yield the URL of an empty scratch database (``None``: backend unavailable)."""
    if backend == "sqlite":
        yield f"sqlite:///{scratch / 'waggle.db'}"
        return
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from waggle.core.db import make_engine

    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"waggle_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
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


def _bench_backend(backend: str, url: str, scratch: Path, requests: int) -> None:
    port = free_port()
    env = {
        **os.environ,
        "WAGGLE_DATABASE_URL": url,
        "WAGGLE_DATA_DIR": str(scratch),
        "WAGGLE_PORT": str(port),
    }
    build_seconds = _build_demo(env)
    tokens = {user: _token(env, user) for user in ("demo", "rep")}
    log = (scratch / "serve.log").open("wb")
    server = subprocess.Popen(
        [waggle_executable(), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(
            f"{base}/api/v1/me",
            timeout=60,
            process=server,
            headers={"Authorization": f"Bearer {tokens['demo']}"},
        )
        outcomes = [
            (scenario, _drive(base, tokens[scenario.username], scenario.paths))
            for scenario in _scenarios(requests)
        ]
    finally:
        stop_process_group(server)
        log.close()
    _print(backend, build_seconds, outcomes)


def _build_demo(env: dict[str, str]) -> float:
    subprocess.run(
        [waggle_executable(), "db", "upgrade"], env=env, check=True, capture_output=True
    )
    started = time.perf_counter()
    subprocess.run(
        [waggle_executable(), "demo"], env=env, check=True, capture_output=True
    )
    return time.perf_counter() - started


def _token(env: dict[str, str], username: str) -> str:
    done = subprocess.run(
        [waggle_executable(), "token", "create", username, "--name", "bench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def _scenarios(requests: int) -> list[Scenario]:
    rng = random.Random(1)
    ids = [rng.randint(1, 20_000) for _ in range(3 * requests)]
    return [
        Scenario(
            "list  GET /api/v1/opportunities?limit=50 (sales_ops)",
            "demo",
            ["/api/v1/opportunities?limit=50"] * requests,
        ),
        Scenario(
            "get   GET /api/v1/opportunities/{id} (sales_ops)",
            "demo",
            [f"/api/v1/opportunities/{i}" for i in ids],
        ),
        Scenario(
            "list  as a rep (row filter: own rows)",
            "rep",
            ["/api/v1/opportunities?limit=50"] * requests,
        ),
    ]


def _drive(base: str, token: str, paths: list[str]) -> Outcome:
    asyncio.run(_load(base, token, paths[:WARM_UP_REQUESTS]))
    return asyncio.run(_load(base, token, paths))


async def _load(base: str, token: str, paths: list[str]) -> Outcome:
    """Send ``paths`` with CONCURRENCY clients, each taking the next path in turn."""
    latencies: list[float] = []
    results: Counter[str] = Counter()
    pending = iter(paths)
    limits = httpx2.Limits(
        max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY
    )
    async with httpx2.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        timeout=120,
    ) as client:

        async def client_loop() -> None:
            for path in pending:
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                except httpx2.HTTPError as error:
                    results[type(error).__name__] += 1
                    continue
                results[str(response.status_code)] += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - started
    return Outcome(len(paths), seconds, latencies, results)


def _print(
    backend: str, build_seconds: float, outcomes: list[tuple[Scenario, Outcome]]
) -> None:
    print(f"\n[{backend}] demo build (waggle demo, full scale): {build_seconds:.1f} s")
    print(
        f"  {'scenario':<54}{'requests':>9}{'errors':>8}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'req/s':>8}"
    )
    for scenario, outcome in outcomes:
        print(
            f"  {scenario.label:<54}{outcome.requests:>9}{outcome.errors:>8}"
            f"{_ms(outcome.latencies, 0.5):>9}{_ms(outcome.latencies, 0.99):>9}"
            f"{outcome.throughput:>8.0f}",
            flush=True,
        )
        if outcome.errors:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(outcome.results.items()))
            print(f"    results: {kinds}")


def _ms(latencies: list[float], fraction: float) -> str:
    return f"{percentile(latencies, fraction) * 1000:.1f}" if latencies else "-"
