#!/usr/bin/env bash
# While Waggle has no release, the schema lives in one initial migration.
# After changing any models.py, run this to write it anew from the models.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f src/waggle/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from waggle.core.migrate import alembic_config
config = alembic_config(f"sqlite:///{sys.argv[1]}/gen.db")
command.revision(config, message="initial schema", autogenerate=True, rev_id="0001")
PY
.venv/bin/ruff check -q --fix src/waggle/migrations/versions/0001_initial_schema.py || true
.venv/bin/ruff format -q src/waggle/migrations/versions/0001_initial_schema.py
rm -rf "$tmp"
