#!/usr/bin/env bash
# Install the front-end packages from npm and copy the files Waggle serves
# into src/waggle/web/static/vendor, so pages never reach for a CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --no-audit --no-fund --loglevel=error
vendor=src/waggle/web/static/vendor
mkdir -p "$vendor"
cp node_modules/htmx.org/dist/htmx.min.js "$vendor/htmx.min.js"
cp node_modules/echarts/dist/echarts.min.js "$vendor/echarts.min.js"
cp node_modules/sortablejs/Sortable.min.js "$vendor/Sortable.min.js"
