"""Waggle's benchmarks: each ``bench_*.py`` module prints figures from ``main()``.

Benchmarks measure and print; they never fail on a wall-clock threshold.
Run them all with ``make bench`` (``.venv/bin/python -m bench``), or some by
name: ``.venv/bin/python -m bench api make_run``. The helpers below are
shared by benchmarks that start a server.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def waggle_executable() -> str:
    """Return the ``waggle`` command installed next to this interpreter."""
    return str(Path(sys.executable).with_name("waggle"))


def wait_for_http(
    url: str,
    *,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> float:
    """Poll ``url`` until it answers with any HTTP status; return the instant.

    Raises:
        RuntimeError: the process ended first, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2):
                return time.perf_counter()
        except urllib.error.HTTPError:
            return time.perf_counter()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """End a process started with ``start_new_session=True`` and all its children."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


def percentile(values: list[float], fraction: float) -> float:
    """Return the ``fraction`` quantile of ``values`` (nearest-rank, inclusive)."""
    if len(values) == 1:
        return values[0]
    cut_points = statistics.quantiles(values, n=1000, method="inclusive")
    return cut_points[round(fraction * 1000) - 1]
