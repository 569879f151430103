"""Settings read from the environment (``WAGGLE_*``), with embedded defaults.

The defaults give the embedded mode: one SQLite file under ``var/`` and the
server on 127.0.0.1:8000. Production points ``WAGGLE_DATABASE_URL`` at
PostgreSQL (``postgresql+psycopg://...``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = Path("var")
# The shipped stage gates live in the rules package; core only names the file.
SHIPPED_STAGE_GATES = Path(__file__).parents[1] / "rules" / "default_gates.yaml"


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one Waggle instance."""

    database_url: str
    data_dir: Path
    secret_key: str
    host: str = "127.0.0.1"
    port: int = 8000
    default_locale: str = "zh-CN"
    public_pool_days: int = 30
    public_pool_claim_cap: int = 50
    public_pool_file: Path | None = None
    policy_file: Path | None = None
    catalogue_file: Path | None = None
    stage_gates_file: Path | None = None  # None: stage moves are not gated
    crypto_suite: str = "gm"
    extra: dict[str, str] = field(default_factory=dict)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default: the process environment)."""
    source = dict(os.environ if env is None else env)
    data_dir = Path(source.get("WAGGLE_DATA_DIR", str(DEFAULT_DATA_DIR)))
    database_url = source.get("WAGGLE_DATABASE_URL") or (
        f"sqlite:///{(data_dir / 'waggle.db').as_posix()}"
    )
    policy_file = source.get("WAGGLE_POLICY_FILE")
    pool_file = source.get("WAGGLE_PUBLIC_POOL_FILE")
    gates_file = source.get("WAGGLE_STAGE_GATES_FILE") or str(SHIPPED_STAGE_GATES)
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key=source.get("WAGGLE_SECRET_KEY") or _stored_secret(data_dir),
        host=source.get("WAGGLE_HOST", "127.0.0.1"),
        port=int(source.get("WAGGLE_PORT", "8000")),
        default_locale=source.get("WAGGLE_LOCALE", "zh-CN"),
        public_pool_days=int(source.get("WAGGLE_PUBLIC_POOL_DAYS", "30")),
        public_pool_claim_cap=int(source.get("WAGGLE_PUBLIC_POOL_CLAIM_CAP", "50")),
        public_pool_file=Path(pool_file) if pool_file else None,
        policy_file=Path(policy_file) if policy_file else None,
        catalogue_file=Path(v) if (v := source.get("WAGGLE_CATALOGUE_FILE")) else None,
        stage_gates_file=None if gates_file == "none" else Path(gates_file),
        crypto_suite=source.get("WAGGLE_CRYPTO_SUITE", "gm"),
    )


def _stored_secret(data_dir: Path) -> str:
    """Return the instance's signing secret, creating it on first use."""
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return value
