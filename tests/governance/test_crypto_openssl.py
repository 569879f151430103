"""Interoperability of both suites with the system ``openssl`` command, both ways.

OpenSSL 3 is required: SM2 with ``-sigopt distid:``, Ed25519 with ``-rawin``.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from waggle.governance.crypto import (
    SignatureInvalid,
    fingerprint,
    get_suite,
    load_signing_key,
    load_verifying_key,
)
from waggle.governance.crypto.sm2 import Sm2PrivateKey

GM = get_suite("gm")
INTL = get_suite("intl")
SM2_ID = "distid:1234567812345678"
MESSAGE = "导出审批：华东大区客户名单 2026-03\n".encode()


def openssl(
    *args: str, cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *args], cwd=cwd, input=stdin, capture_output=True, check=False
    )


def write(directory: Path, name: str, content: bytes) -> str:
    (directory / name).write_bytes(content)
    return name


def test_system_openssl_is_version_3():
    """The interop tests rely on OpenSSL 3 (SM2 distid, Ed25519 -rawin)."""
    result = openssl("version", cwd=Path.cwd())

    assert result.returncode == 0
    assert result.stdout.startswith(b"OpenSSL 3.")


def test_openssl_verifies_a_waggle_sm2_signature_with_dgst_and_pkeyutl(tmp_path):
    """A Waggle SM2 signature passes `dgst -sm3 -verify` and `pkeyutl -verify`."""
    key = GM.generate_signing_key()
    write(tmp_path, "message", MESSAGE)
    write(tmp_path, "public.pem", key.public_key().public_pem())
    write(tmp_path, "message.sig", key.sign(MESSAGE))

    dgst = openssl(
        "dgst", "-sm3", "-verify", "public.pem", "-sigopt", SM2_ID,
        "-signature", "message.sig", "message", cwd=tmp_path,
    )  # fmt: skip
    pkeyutl = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "public.pem", "-rawin",
        "-digest", "sm3", "-pkeyopt", SM2_ID, "-in", "message",
        "-sigfile", "message.sig", cwd=tmp_path,
    )  # fmt: skip

    assert (dgst.returncode, dgst.stdout) == (0, b"Verified OK\n")
    assert (pkeyutl.returncode, pkeyutl.stdout) == (
        0,
        b"Signature Verified Successfully\n",
    )


def test_openssl_refuses_a_waggle_sm2_signature_under_another_id(tmp_path):
    """Signed with ID ALICE123@YAHOO.COM, it verifies only under that ID."""
    key = Sm2PrivateKey.generate()
    write(tmp_path, "message", MESSAGE)
    write(tmp_path, "public.pem", key.public_key().public_pem())
    write(
        tmp_path,
        "message.sig",
        key.sign(MESSAGE, distinguishing_id=b"ALICE123@YAHOO.COM"),
    )

    def verify(distid: str) -> int:
        return openssl(
            "dgst", "-sm3", "-verify", "public.pem", "-sigopt", distid,
            "-signature", "message.sig", "message", cwd=tmp_path,
        ).returncode  # fmt: skip

    assert verify(SM2_ID) == 1
    assert verify("distid:ALICE123@YAHOO.COM") == 0


def test_waggle_verifies_and_uses_keys_and_signatures_made_by_openssl(tmp_path):
    """OpenSSL's SM2 key and signature load and verify in Waggle, and back."""
    openssl("genpkey", "-algorithm", "SM2", "-out", "private.pem", cwd=tmp_path)
    openssl("pkey", "-in", "private.pem", "-pubout", "-out", "public.pem", cwd=tmp_path)
    write(tmp_path, "message", MESSAGE)
    openssl(
        "dgst", "-sm3", "-sign", "private.pem", "-sigopt", SM2_ID,
        "-out", "openssl.sig", "message", cwd=tmp_path,
    )  # fmt: skip
    private = load_signing_key((tmp_path / "private.pem").read_bytes())
    public = load_verifying_key((tmp_path / "public.pem").read_bytes())
    write(tmp_path, "waggle.sig", private.sign(MESSAGE))

    public.verify(MESSAGE, (tmp_path / "openssl.sig").read_bytes())
    back = openssl(
        "dgst", "-sm3", "-verify", "public.pem", "-sigopt", SM2_ID,
        "-signature", "waggle.sig", "message", cwd=tmp_path,
    )  # fmt: skip

    assert public == private.public_key()
    assert back.returncode == 0
    with pytest.raises(SignatureInvalid):
        public.verify(MESSAGE + b"!", (tmp_path / "openssl.sig").read_bytes())


def test_waggle_refuses_an_openssl_sm2_signature_made_under_another_id(tmp_path):
    """OpenSSL signing with distid ALICE123@YAHOO.COM does not pass Waggle's check."""
    openssl("genpkey", "-algorithm", "SM2", "-out", "private.pem", cwd=tmp_path)
    write(tmp_path, "message", MESSAGE)
    openssl(
        "dgst", "-sm3", "-sign", "private.pem", "-sigopt", "distid:ALICE123@YAHOO.COM",
        "-out", "alice.sig", "message", cwd=tmp_path,
    )  # fmt: skip
    public = Sm2PrivateKey.from_pem((tmp_path / "private.pem").read_bytes()).public
    signature = (tmp_path / "alice.sig").read_bytes()

    with pytest.raises(SignatureInvalid):
        public.verify(MESSAGE, signature)
    public.verify(MESSAGE, signature, distinguishing_id=b"ALICE123@YAHOO.COM")


def test_openssl_reads_waggle_sm2_pem_keys_byte_for_byte(tmp_path):
    """OpenSSL derives from Waggle's PKCS#8 the exact public PEM Waggle writes."""
    key = GM.generate_signing_key()
    write(tmp_path, "private.pem", key.private_pem())

    derived = openssl("pkey", "-in", "private.pem", "-pubout", cwd=tmp_path)
    text = openssl("pkey", "-in", "private.pem", "-noout", "-text", cwd=tmp_path)

    assert derived.stdout == key.public_key().public_pem()
    assert b"ASN1 OID: SM2" in text.stdout


def test_openssl_verifies_a_waggle_ed25519_signature(tmp_path):
    """A Waggle Ed25519 signature passes `pkeyutl -verify -rawin`; altered, it fails."""
    key = INTL.generate_signing_key()
    write(tmp_path, "message", MESSAGE)
    write(tmp_path, "public.pem", key.public_key().public_pem())
    signature = key.sign(MESSAGE)
    write(tmp_path, "good.sig", signature)
    write(tmp_path, "bad.sig", signature[:-1] + bytes([signature[-1] ^ 1]))

    def verify(sigfile: str) -> int:
        return openssl(
            "pkeyutl", "-verify", "-pubin", "-inkey", "public.pem", "-rawin",
            "-in", "message", "-sigfile", sigfile, cwd=tmp_path,
        ).returncode  # fmt: skip

    assert verify("good.sig") == 0
    assert verify("bad.sig") == 1


def test_waggle_verifies_an_openssl_ed25519_signature_and_key(tmp_path):
    """OpenSSL's Ed25519 key and signature load and verify in Waggle."""
    openssl("genpkey", "-algorithm", "ED25519", "-out", "private.pem", cwd=tmp_path)
    openssl("pkey", "-in", "private.pem", "-pubout", "-out", "public.pem", cwd=tmp_path)
    write(tmp_path, "message", MESSAGE)
    openssl(
        "pkeyutl", "-sign", "-inkey", "private.pem", "-rawin", "-in", "message",
        "-out", "message.sig", cwd=tmp_path,
    )  # fmt: skip

    public = load_verifying_key((tmp_path / "public.pem").read_bytes())
    private = load_signing_key((tmp_path / "private.pem").read_bytes())
    public.verify(MESSAGE, (tmp_path / "message.sig").read_bytes())

    assert public.suite == "intl"
    # Ed25519 is deterministic: Waggle's signature equals OpenSSL's.
    assert private.sign(MESSAGE) == (tmp_path / "message.sig").read_bytes()


@pytest.mark.parametrize(
    "content",
    [b"", b"abc", "中文数据：客户、商机、报价".encode(), secrets.token_bytes(1 << 20)],
    ids=["empty", "abc", "chinese", "one-mebibyte"],
)
def test_sm3_and_sha256_digests_equal_openssl_dgst(tmp_path, content):
    """Both suites' hashes equal `openssl dgst -sm3` and `-sha256` output."""
    write(tmp_path, "data", content)

    sm3 = openssl("dgst", "-sm3", "-r", "data", cwd=tmp_path)
    sha256 = openssl("dgst", "-sha256", "-r", "data", cwd=tmp_path)

    assert sm3.stdout == f"{GM.hash(content).hex()} *data\n".encode()
    assert sha256.stdout == f"{INTL.hash(content).hex()} *data\n".encode()


@pytest.mark.parametrize("suite", ["gm", "intl"])
def test_fingerprints_equal_openssl_digest_of_the_public_key_der(tmp_path, suite):
    """A key fingerprint is what OpenSSL prints for the DER public key's digest."""
    key = get_suite(suite).generate_signing_key().public_key()
    write(tmp_path, "public.pem", key.public_pem())
    der = openssl(
        "pkey", "-pubin", "-in", "public.pem", "-outform", "DER", cwd=tmp_path
    )

    algorithm, expected = fingerprint(key).split(":")

    digest = openssl("dgst", f"-{algorithm}", "-r", cwd=tmp_path, stdin=der.stdout)

    assert digest.stdout.decode() == f"{expected} *stdin\n"
