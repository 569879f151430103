"""The ``hash`` mask's key: HMAC under the instance's suite, kept in the key store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from waggle import cli
from waggle.app import create_app
from waggle.core.settings import Settings
from waggle.governance import masking
from waggle.governance.crypto import get_suite
from waggle.governance.field_crypto import master_key
from waggle.governance.keystore import KeyStore
from waggle.governance.masking import (
    configure_masking_key,
    hash_mask,
    load_masking_key,
    masking_key,
)

PHONE = "13812341234"
FIELD = b"contacts.phone\x00"
GM_KEY = get_suite("gm").secret_key(bytes(range(16)))
INTL_KEY = get_suite("intl").secret_key(bytes(range(32)))


def _openssl_has_sm3() -> bool:
    if shutil.which("openssl") is None:
        return False
    listed = subprocess.run(
        ["openssl", "list", "-digest-algorithms"], capture_output=True, check=False
    )
    return b"SM3" in listed.stdout.upper()


@pytest.fixture(autouse=True)
def _no_key_left_behind() -> Iterator[None]:
    yield
    configure_masking_key(None)


def _settings(tmp_path: Path, suite: str = "gm") -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'waggle.db'}",
        data_dir=tmp_path,
        secret_key="test-secret",
        crypto_suite=suite,
    )


def _stored_material(data_dir: Path, suite: str) -> bytes:
    """Read the masking key file directly, without Waggle's key store."""
    path = data_dir / "keys" / f"masking-hash-{suite}.secret.json"
    return base64.b64decode(json.loads(path.read_text(encoding="utf-8"))["key"])


def test_the_same_value_and_key_hash_the_same() -> None:
    """One key gives one hash per value, and different values differ."""
    first = hash_mask(PHONE, table="contacts", column="phone", key=GM_KEY)

    again = hash_mask(PHONE, table="contacts", column="phone", key=GM_KEY)
    other = hash_mask("13812341235", table="contacts", column="phone", key=GM_KEY)

    assert first == again
    assert other != first
    assert len(first) == masking.HASH_LENGTH and set(first) <= set("0123456789abcdef")


def test_another_key_gives_another_hash() -> None:
    """The same value under two keys of the same suite hashes differently."""
    other_key = get_suite("gm").secret_key(bytes(range(1, 17)))

    hashes = {
        hash_mask(PHONE, table="contacts", column="phone", key=key)
        for key in (GM_KEY, other_key)
    }

    assert len(hashes) == 2


@pytest.mark.parametrize("key", [GM_KEY, INTL_KEY], ids=["gm", "intl"])
def test_the_hash_is_not_the_unkeyed_sha256_prefix(key) -> None:
    """Nobody without the key can reproduce a hash by hashing a guess."""
    unkeyed = hashlib.sha256(FIELD + PHONE.encode()).hexdigest()[:16]

    shown = hash_mask(PHONE, table="contacts", column="phone", key=key)

    assert shown != unkeyed


def test_the_gm_hash_is_hmac_sm3_matching_a_known_answer() -> None:
    """Under gm the hash is HMAC-SM3 (the answer computed with ``openssl mac``)."""
    shown = hash_mask(PHONE, table="contacts", column="phone", key=GM_KEY)

    assert shown == "ab5e10f361b1fe92"


def test_the_intl_hash_is_hmac_sha256_as_the_standard_library_computes_it() -> None:
    """Under intl the hash is HMAC-SHA-256 per Python's hmac and hashlib."""
    expected = hmac.new(INTL_KEY.material, FIELD + PHONE.encode(), hashlib.sha256)

    shown = hash_mask(PHONE, table="contacts", column="phone", key=INTL_KEY)

    assert shown == expected.hexdigest()[:16]


@pytest.mark.skipif(not _openssl_has_sm3(), reason="the openssl here lacks SM3")
@pytest.mark.parametrize("value", [PHONE, "王五", "x" * 200])
def test_the_gm_hash_is_hmac_sm3_as_openssl_computes_it(
    tmp_path: Path, value: str
) -> None:
    """A random key's HMAC-SM3 equals ``openssl mac -digest SM3 ... HMAC``."""
    key = get_suite("gm").generate_secret_key()
    (tmp_path / "message").write_bytes(FIELD + value.encode("utf-8"))

    result = subprocess.run(
        ["openssl", "mac", "-digest", "SM3", "-macopt",
         f"hexkey:{key.material.hex()}", "-in", "message", "HMAC"],
        cwd=tmp_path, capture_output=True, check=True,
    )  # fmt: skip

    shown = hash_mask(value, table="contacts", column="phone", key=key)
    assert shown == result.stdout.decode("ascii").strip().lower()[:16]


@pytest.mark.parametrize("suite", ["gm", "intl"])
def test_the_key_is_created_in_the_key_store_once_and_persists(
    tmp_path: Path, suite: str
) -> None:
    """A second configuration on the same store loads the same key, file 0600."""
    settings = _settings(tmp_path, suite)
    configure_masking_key(settings)
    first = hash_mask(PHONE, table="contacts", column="phone")

    configure_masking_key(settings)
    again = hash_mask(PHONE, table="contacts", column="phone")

    path = tmp_path / "keys" / f"masking-hash-{suite}.secret.json"
    assert again == first
    assert masking_key().suite == suite
    assert masking_key().material == _stored_material(tmp_path, suite)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_configured_hash_is_the_hmac_under_the_stored_key(tmp_path: Path) -> None:
    """With an intl store, the hash is HMAC-SHA-256 under the key file's bytes."""
    configure_masking_key(_settings(tmp_path, "intl"))
    shown = hash_mask(PHONE, table="contacts", column="phone")

    material = _stored_material(tmp_path, "intl")
    expected = hmac.new(material, FIELD + PHONE.encode(), hashlib.sha256)

    assert shown == expected.hexdigest()[:16]


def test_the_masking_key_is_its_own_and_not_the_field_master_key(
    tmp_path: Path,
) -> None:
    """Field encryption's master key exists beside it and is a different key."""
    settings = _settings(tmp_path)
    field_master = master_key(settings, "gm")

    loaded = load_masking_key(KeyStore.for_settings(settings), suite="gm")

    assert loaded.key_id != field_master.key_id
    assert sorted(path.name for path in (tmp_path / "keys").iterdir()) == [
        "field-master-gm.secret.json",
        "masking-hash-gm.secret.json",
    ]


def test_a_replaced_key_is_used_from_the_next_configuration(tmp_path: Path) -> None:
    """After rotation (a new key file) hashes change, once the key is reconfigured."""
    settings = _settings(tmp_path)
    configure_masking_key(settings)
    before = hash_mask(PHONE, table="contacts", column="phone")

    (tmp_path / "keys" / "masking-hash-gm.secret.json").unlink()
    still = hash_mask(PHONE, table="contacts", column="phone")
    configure_masking_key(settings)
    after = hash_mask(PHONE, table="contacts", column="phone")

    assert still == before
    assert after != before


def test_without_a_key_store_an_ephemeral_key_is_announced_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Unconfigured, hashes are keyed by a random in-memory key, with one warning."""
    monkeypatch.setattr(masking, "_ephemeral_key", None)
    configure_masking_key(None)
    unkeyed = hashlib.sha256(FIELD + PHONE.encode()).hexdigest()[:16]

    with caplog.at_level(logging.WARNING, logger="waggle.governance.masking"):
        first = hash_mask(PHONE, table="contacts", column="phone")
        again = hash_mask(PHONE, table="contacts", column="phone")

    warnings = [r for r in caplog.records if r.name == "waggle.governance.masking"]
    assert first == again != unkeyed
    assert [
        (r.levelname, r.getMessage(), getattr(r, "reason", None)) for r in warnings
    ] == [("WARNING", "masking key is ephemeral", "no_key_store")]


def test_the_app_configures_the_instance_masking_key(tmp_path: Path) -> None:
    """Building the application loads (or creates) the key in its data directory."""
    app = create_app(_settings(tmp_path))
    app.state.engine.dispose()

    assert masking_key().material == _stored_material(tmp_path, "gm")


def test_the_cli_configures_the_instance_masking_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command's settings load the key of ``WAGGLE_DATA_DIR``."""
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WAGGLE_CRYPTO_SUITE", "intl")

    cli.settings()

    assert masking_key().material == _stored_material(tmp_path, "intl")
