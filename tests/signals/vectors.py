"""Where the platforms' published callback example values live.

They are shared material beside the repository (``../shared/vectors``, in CI a
copy beside the clone); ``WAGGLE_VECTORS`` names another folder. Missing
vectors fail the tests that need them rather than skipping them: a suite that
quietly stops checking the real protocol would still pass.
"""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def vectors_dir() -> Path:
    """Return the folder of published vectors; raise when it cannot be found."""
    candidates = [
        Path(os.environ["WAGGLE_VECTORS"])
        if os.environ.get("WAGGLE_VECTORS")
        else None,
        REPOSITORY.parent / "shared" / "vectors",
        Path("/work/shared/vectors"),
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "the published callback vectors are missing: expected ../shared/vectors "
        "beside the repository, or WAGGLE_VECTORS"
    )


VECTORS = vectors_dir()
