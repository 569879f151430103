"""Local key storage: PEM files under the data directory, private ones 0600."""

from __future__ import annotations

import stat

import pytest

from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.core.settings import Settings
from waggle.governance.crypto import fingerprint
from waggle.governance.keystore import KeyStore


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path) -> KeyStore:
    settings = Settings(database_url="sqlite://", data_dir=tmp_path, secret_key="x")
    return KeyStore.for_settings(settings)


@pytest.mark.parametrize("suite", ["gm", "intl"])
def test_created_keys_are_stored_as_private_pem_files_and_load_back(store, suite):
    """A new key pair lands in <data_dir>/keys with 0700/0600/0644 modes."""
    stored = store.create_signing_key("zhang.san-2026", suite=suite)

    loaded = store.signing_key(stored.name)

    assert fingerprint(loaded.public_key()) == stored.fingerprint
    assert store.verifying_key(stored.name) == loaded.public_key()
    assert mode(store.root) == 0o700
    assert mode(store.root / f"{stored.name}.key.pem") == 0o600
    assert mode(stored.public_path) == 0o644
    assert stored.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_listing_shows_every_key_with_suite_and_fingerprint(store):
    """Keys are listed by name with algorithm and fingerprint."""
    alice = store.create_signing_key("alice", suite="gm")
    bob = store.create_signing_key("bob", suite="intl")

    listed = store.list_signing_keys()

    assert [(key.name, key.algorithm, key.fingerprint) for key in listed] == [
        ("alice", "SM2-with-SM3", alice.fingerprint),
        ("bob", "Ed25519", bob.fingerprint),
    ]
    assert alice.fingerprint.startswith("sm3:")
    assert bob.fingerprint.startswith("sha256:")


def test_an_existing_key_is_never_overwritten(store):
    """Creating a key under a taken name is a conflict and keeps the old key."""
    first = store.create_signing_key("alice")

    with pytest.raises(Conflict, match="already exists"):
        store.create_signing_key("alice")

    assert store.list_signing_keys()[0].fingerprint == first.fingerprint


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 65])
def test_key_names_are_plain_file_names(store, name):
    """Names with separators, leading dots or over 64 characters are refused."""
    with pytest.raises(InvalidInput, match="key name"):
        store.create_signing_key(name)


def test_a_private_key_readable_by_others_is_refused(store):
    """A private key file with group or other permissions is not used."""
    store.create_signing_key("alice")
    (store.root / "alice.key.pem").chmod(0o644)

    with pytest.raises(InvalidInput, match="mode 0644"):
        store.signing_key("alice")


def test_missing_keys_are_not_found(store):
    """Loading a key that was never created is NotFound."""
    with pytest.raises(NotFound):
        store.signing_key("nobody")
    with pytest.raises(NotFound):
        store.secret_key("nobody")
    assert store.list_signing_keys() == []


@pytest.mark.parametrize(("suite", "size"), [("gm", 16), ("intl", 32)])
def test_secret_keys_are_stored_0600_and_load_back(store, suite, size):
    """Field-encryption keys round-trip through a 0600 JSON file."""
    created = store.create_secret_key("fields", suite=suite)

    loaded = store.secret_key("fields")

    assert loaded == created
    assert len(loaded.material) == size
    assert mode(store.root / "fields.secret.json") == 0o600
