"""Build the C extension; everything else about the package is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and
``waggle.signals.trackers`` uses its pure-Python matcher (it logs that once).
"""

import sys

from setuptools import Extension, setup

# The native jieba cut must add up word scores exactly as Python does: no
# fused multiply-add.
COMPILE_ARGS = (
    [] if sys.platform == "win32" else ["-Wall", "-Wextra", "-ffp-contract=off"]
)
LIBRARIES = [] if sys.platform == "win32" else ["m"]

setup(
    ext_modules=[
        Extension(
            "waggle.signals._tracker_native",
            sources=["src/waggle/signals/_tracker_native.c"],
            extra_compile_args=COMPILE_ARGS,
            libraries=LIBRARIES,
            optional=True,
        )
    ]
)
