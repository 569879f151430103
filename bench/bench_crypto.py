"""Crypto throughput per suite: signatures, hashes, AEAD, and signed packages.

For ``gm`` (SM2 via gmssl in pure Python, SM3 and SM4-GCM via OpenSSL through
`cryptography`) and ``intl`` (Ed25519, SHA-256, AES-256-GCM, all OpenSSL):
signatures per second (sign, verify), hash and bulk-encryption throughput in
MiB/s, small-field encryptions per second (what field encryption at rest
does), and the wall time to build and verify a signed export package.

Settings (environment):
    WAGGLE_BENCH_CRYPTO_SECONDS   time spent per figure, default 1.0
    WAGGLE_BENCH_CRYPTO_PACKAGE_MIB   data in the package, default 16
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from waggle.governance.crypto import get_suite
from waggle.governance.packages import Signer, build_package, verify_package

SECONDS = float(os.environ.get("WAGGLE_BENCH_CRYPTO_SECONDS", "1.0"))
PACKAGE_MIB = int(os.environ.get("WAGGLE_BENCH_CRYPTO_PACKAGE_MIB", "16"))
MESSAGE = secrets.token_bytes(1024)
BULK = secrets.token_bytes(1 << 20)
FIELD = b"13800138000"


def rate(operation: Callable[[], object]) -> float:
    """Return how many times per second ``operation`` runs, over SECONDS."""
    operation()  # warm-up
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < SECONDS:
        operation()
        count += 1
    return count / elapsed


def bench_suite(name: str) -> None:
    suite = get_suite(name)
    key = suite.generate_signing_key()
    public = key.public_key()
    signature = key.sign(MESSAGE)
    secret = suite.generate_secret_key()
    sealed = suite.encrypt(secret, BULK)

    print(f"{name} ({suite.signature_algorithm}, {suite.hash_algorithm}, "
          f"{suite.cipher_algorithm})")  # fmt: skip
    print(f"  sign 1 KiB             {rate(lambda: key.sign(MESSAGE)):10.1f} /s")
    print(
        f"  verify 1 KiB           "
        f"{rate(lambda: public.verify(MESSAGE, signature)):10.1f} /s"
    )
    print(f"  hash                   {rate(lambda: suite.hash(BULK)):10.1f} MiB/s")
    print(
        f"  encrypt 1 MiB          "
        f"{rate(lambda: suite.encrypt(secret, BULK)):10.1f} MiB/s"
    )
    print(
        f"  decrypt 1 MiB          "
        f"{rate(lambda: suite.decrypt(secret, sealed)):10.1f} MiB/s"
    )
    print(
        f"  encrypt 11-byte field  "
        f"{rate(lambda: suite.encrypt(secret, FIELD, associated_data=b'x')):10.1f} /s"
    )
    bench_package(name)


def bench_package(name: str) -> None:
    suite = get_suite(name)
    signers = [
        Signer(name="exporter", role="exporter", key=suite.generate_signing_key()),
        Signer(
            name="officer", role="compliance_officer", key=suite.generate_signing_key()
        ),
    ]
    files = {f"part-{index:02d}.csv": BULK for index in range(PACKAGE_MIB)}
    with tempfile.TemporaryDirectory() as scratch:
        destination = Path(scratch) / "package.zip"
        started = time.perf_counter()
        build_package(destination, files=files, signers=signers, audit_entry={"a": 1})
        built = time.perf_counter()
        result = verify_package(destination)
        verified = time.perf_counter()
    if not result.is_valid:
        raise RuntimeError(f"benchmark package invalid: {result.problems[0].message}")
    print(
        f"  package of {PACKAGE_MIB} MiB (.zip) build {built - started:6.2f} s,"
        f" verify {verified - built:6.2f} s"
    )


def main() -> None:
    print(f"{SECONDS:.1f} s per figure; one process, one core")
    for name in ("gm", "intl"):
        bench_suite(name)


if __name__ == "__main__":
    main()
