"""How long ``make run`` takes from a fresh clone until the server answers.

Clones this repository into a temporary folder (uncommitted changes in the
work tree are copied over, so the figure matches what is being worked on;
set ``WAGGLE_BENCH_COMMITTED_ONLY=1`` to measure HEAD alone), then times:

- fresh clone: ``make run`` installs the venv and front-end assets, migrates,
  builds the demo company and serves; until ``http://127.0.0.1:PORT/`` answers;
- demo build alone: ``waggle db upgrade`` and ``waggle demo`` into a scratch
  data folder with the venv already installed;
- second run: ``make run`` again (everything installed, database present, so
  the demo is skipped);
- rebuilt data: ``make run`` with the venv installed but ``var/`` removed, so
  the demo company is built again.

Each ``make run`` is stopped by ending its process group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import REPOSITORY, free_port, stop_process_group, wait_for_http

FRESH_TIMEOUT = 1200.0
RUN_TIMEOUT = 300.0
CLEANED_VARIABLES = (
    "VIRTUAL_ENV",
    "WAGGLE_DATABASE_URL",
    "WAGGLE_DATA_DIR",
    "PYTHONPATH",
)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="waggle-bench-run-") as scratch:
        checkout = Path(scratch) / "waggle"
        _clone(checkout)
        figures = [
            (
                "fresh clone: make run until / answers",
                _make_run(checkout, FRESH_TIMEOUT),
            )
        ]
        figures.append(("demo build alone (db upgrade + demo)", _demo_alone(checkout)))
        figures.append(
            ("second run: make run until / answers", _make_run(checkout, RUN_TIMEOUT))
        )
        shutil.rmtree(checkout / "var")
        figures.append(
            ("rebuilt data: make run, var/ removed", _make_run(checkout, RUN_TIMEOUT))
        )
    for label, seconds in figures:
        print(f"  {label:<44}{seconds:>8.1f} s")


def _clone(checkout: Path) -> None:
    subprocess.run(
        ["git", "clone", "--quiet", str(REPOSITORY), str(checkout)], check=True
    )
    if os.environ.get("WAGGLE_BENCH_COMMITTED_ONLY") == "1":
        print("  measuring HEAD only")
        return
    copied, removed = _overlay_work_tree(checkout)
    print(
        f"  work tree copied over HEAD: {copied} changed or new files, "
        f"{removed} deleted"
    )


def _overlay_work_tree(checkout: Path) -> tuple[int, int]:
    """Copy uncommitted changes (modified and untracked, not ignored) into the clone."""

    def listed(*options: str) -> list[str]:
        done = subprocess.run(
            ["git", "-C", str(REPOSITORY), "ls-files", "-z", *options],
            check=True,
            capture_output=True,
        )
        return [name for name in done.stdout.decode().split("\0") if name]

    deleted = set(listed("--deleted"))
    changed = [
        name
        for name in listed("--modified", "--others", "--exclude-standard")
        if name not in deleted
    ]
    for name in changed:
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPOSITORY / name, target)
    for name in deleted:
        (checkout / name).unlink(missing_ok=True)
    return len(changed), len(deleted)


def _environment(port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEANED_VARIABLES}
    if port is not None:
        env["WAGGLE_PORT"] = str(port)
    return env


def _make_run(checkout: Path, timeout: float) -> float:
    """Start ``make run``; return the seconds until the home page answers."""
    port = free_port()
    log_path = checkout.parent / f"make-run-{port}.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            ["make", "run"],
            cwd=checkout,
            env=_environment(port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            answered = wait_for_http(
                f"http://127.0.0.1:{port}/", timeout=timeout, process=process
            )
        except RuntimeError:
            print(log_path.read_text(encoding="utf-8", errors="replace")[-3000:])
            raise
        finally:
            stop_process_group(process)
    return answered - started


def _demo_alone(checkout: Path) -> float:
    waggle = str(checkout / ".venv" / "bin" / "waggle")
    with tempfile.TemporaryDirectory(prefix="waggle-bench-data-") as data:
        env = {**_environment(), "WAGGLE_DATA_DIR": data}
        started = time.perf_counter()
        for command in (["db", "upgrade"], ["demo"]):
            subprocess.run(
                [waggle, *command],
                cwd=checkout,
                env=env,
                check=True,
                capture_output=True,
            )
        return time.perf_counter() - started
