"""Run every benchmark in ``bench/`` in turn, or only those named on the command line.

Each module ``bench/bench_NAME.py`` provides ``main()``; it is named ``NAME``
or ``bench_NAME``. A benchmark that raises is reported and the others still
run; the exit status is then 1.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Return the module names of all benchmarks, in alphabetical order."""
    return sorted(
        module.name
        for module in pkgutil.iter_modules([str(PACKAGE_DIR)])
        if module.name.startswith("bench_")
    )


def resolve(names: list[str]) -> list[str]:
    """Turn command-line names (``api`` or ``bench_api``) into module names."""
    known = discover()
    modules = []
    for name in names:
        module = name if name.startswith("bench_") else f"bench_{name}"
        if module not in known:
            raise SystemExit(
                f"unknown benchmark {name!r}; known: "
                + ", ".join(k.removeprefix("bench_") for k in known)
            )
        modules.append(module)
    return modules


def run(module_name: str) -> bool:
    """Run one benchmark's ``main()`` under a header; return whether it finished."""
    title = module_name.removeprefix("bench_")
    print(f"\n=== {title} " + "=" * max(3, 70 - len(title)), flush=True)
    started = time.perf_counter()
    try:
        importlib.import_module(f"bench.{module_name}").main()
    except Exception:
        traceback.print_exc()
        print(f"--- {title}: failed after {time.perf_counter() - started:.1f} s")
        return False
    print(f"--- {title}: {time.perf_counter() - started:.1f} s", flush=True)
    return True


def main(argv: list[str]) -> int:
    modules = resolve(argv) if argv else discover()
    results = [run(module) for module in modules]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
