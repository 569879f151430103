"""Local key storage under the instance's data directory.

Signing keys are PEM files OpenSSL reads: ``<name>.key.pem`` (PKCS#8, mode
0600) and ``<name>.pub.pem``. Secret keys for field encryption are small JSON
files ``<name>.secret.json`` (mode 0600). The directory itself is 0700, and a
private file that others can read is refused rather than used.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.core.settings import Settings
from waggle.governance.crypto import (
    SecretKey,
    SigningKey,
    VerifyingKey,
    fingerprint,
    get_suite,
    load_signing_key,
    load_verifying_key,
)

logger = logging.getLogger(__name__)

KEYS_DIRECTORY = "keys"
PRIVATE_SUFFIX = ".key.pem"
PUBLIC_SUFFIX = ".pub.pem"
SECRET_SUFFIX = ".secret.json"  # noqa: S105 (a file suffix, not a secret)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class StoredKey:
    """One signing key pair on disk, as listings show it."""

    name: str
    suite: str
    algorithm: str
    fingerprint: str
    public_path: Path


class KeyStore:
    """The key files of one Waggle instance (``<data_dir>/keys``)."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_settings(cls, settings: Settings) -> KeyStore:
        return cls(settings.data_dir / KEYS_DIRECTORY)

    def create_signing_key(self, name: str, *, suite: str = "gm") -> StoredKey:
        """Generate a key pair of ``suite`` and store it as ``name``.

        Raises:
            InvalidInput: a bad name or an unknown suite.
            Conflict: a key called ``name`` exists.
        """
        key = get_suite(suite).generate_signing_key()
        return self.add_signing_key(name, key)

    def add_signing_key(self, name: str, key: SigningKey) -> StoredKey:
        """Store an existing private key as ``name``.

        Raises:
            InvalidInput: a bad name.
            Conflict: a key called ``name`` exists.
        """
        private_path = self._path(name, PRIVATE_SUFFIX)
        self._write_new(private_path, key.private_pem(), mode=0o600)
        public_path = self._path(name, PUBLIC_SUFFIX)
        public_path.write_bytes(key.public_key().public_pem())
        public_path.chmod(0o644)
        logger.info("signing key stored", extra={"key_name": name, "suite": key.suite})
        return self._describe(name, key.public_key())

    def signing_key(self, name: str) -> SigningKey:
        """Load the private key ``name``.

        Raises:
            NotFound: no such key.
            InvalidInput: the file is readable by others or malformed.
        """
        return load_signing_key(self._read_private(self._path(name, PRIVATE_SUFFIX)))

    def verifying_key(self, name: str) -> VerifyingKey:
        """Load the public key ``name``.

        Raises:
            NotFound: no such key.
            InvalidInput: the file is malformed.
        """
        path = self._path(name, PUBLIC_SUFFIX)
        if not path.is_file():
            raise NotFound(f"key {name!r}: no public key at {path}")
        return load_verifying_key(path.read_bytes())

    def list_signing_keys(self) -> list[StoredKey]:
        """Return every stored key pair, sorted by name."""
        if not self.root.is_dir():
            return []
        names = sorted(
            path.name.removesuffix(PUBLIC_SUFFIX)
            for path in self.root.glob(f"*{PUBLIC_SUFFIX}")
        )
        return [self._describe(name, self.verifying_key(name)) for name in names]

    def create_secret_key(self, name: str, *, suite: str = "gm") -> SecretKey:
        """Generate a symmetric key of ``suite`` and store it as ``name``.

        Raises:
            InvalidInput: a bad name or an unknown suite.
            Conflict: a secret key called ``name`` exists.
        """
        key = get_suite(suite).generate_secret_key()
        document = {
            "suite": key.suite,
            "key_id": key.key_id,
            "key": base64.b64encode(key.material).decode("ascii"),
        }
        content = json.dumps(document, indent=2).encode("utf-8") + b"\n"
        self._write_new(self._path(name, SECRET_SUFFIX), content, mode=0o600)
        logger.info("secret key stored", extra={"key_name": name, "suite": suite})
        return key

    def secret_key(self, name: str) -> SecretKey:
        """Load the symmetric key ``name``.

        Raises:
            NotFound: no such key.
            InvalidInput: the file is readable by others or malformed.
        """
        path = self._path(name, SECRET_SUFFIX)
        try:
            document = json.loads(self._read_private(path))
            material = base64.b64decode(document["key"], validate=True)
            key = get_suite(document["suite"]).secret_key(material)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidInput(f"secret key file {path}: malformed") from exc
        if key.key_id != document.get("key_id"):
            raise InvalidInput(f"secret key file {path}: key_id does not match the key")
        return key

    def _describe(self, name: str, key: VerifyingKey) -> StoredKey:
        return StoredKey(
            name=name,
            suite=key.suite,
            algorithm=key.algorithm,
            fingerprint=fingerprint(key),
            public_path=self._path(name, PUBLIC_SUFFIX),
        )

    def _path(self, name: str, suffix: str) -> Path:
        if not _NAME.fullmatch(name):
            raise InvalidInput(
                f"key name {name!r}: expected letters, digits, '.', '_' or '-'"
                " (at most 64, starting with a letter or digit)"
            )
        return self.root / f"{name}{suffix}"

    def _write_new(self, path: Path, content: bytes, *, mode: int) -> None:
        # Written whole under a temporary name, then linked into place: a
        # process reading the key at the same moment finds no file or all of it.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(draft, path)
        except FileExistsError:
            raise Conflict(f"key file {path} already exists") from None
        finally:
            draft.unlink(missing_ok=True)

    def _read_private(self, path: Path) -> bytes:
        try:
            status = path.stat()
        except FileNotFoundError:
            raise NotFound(f"key file {path} does not exist") from None
        if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidInput(
                f"key file {path}: mode {stat.S_IMODE(status.st_mode):04o} lets"
                " others read it; expected 0600"
            )
        return path.read_bytes()
