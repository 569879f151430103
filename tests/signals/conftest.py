"""Fixtures of the signals tests: a real Dovecot IMAP server on loopback."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.signals.dovecot import DovecotServer, DovecotUnavailable, start_dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """Start one throwaway Dovecot for the whole run; fail (never skip) without it."""
    # Not under pytest's tmp folder: that one is mode 0700, and Dovecot's mail
    # processes run as the unprivileged ``dovecot`` account when tests run as root.
    root = Path(tempfile.mkdtemp(prefix="waggle-dovecot-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        try:
            server = stack.enter_context(start_dovecot(root))
        except DovecotUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
