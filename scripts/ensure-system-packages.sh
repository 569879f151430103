#!/usr/bin/env bash
# Install the Debian packages Waggle needs, when they are missing.
#   --build     what the install compiles with (a C compiler for the
#               trackers' extension, and Python's headers when missing)
#   --runtime   only what the server itself needs (OpenMP for LightGBM)
#   (default)   also what the test suite drives (Chromium, Dovecot)
set -euo pipefail
needed=()
if [ "${1:-}" = "--build" ]; then
  command -v cc >/dev/null 2>&1 || needed+=(gcc libc6-dev)
  python_headers="$(${PYTHON:-python3.11} -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"
  test -f "$python_headers" || needed+=(python3-dev)
  if [ ${#needed[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
    # The extension is optional: without them the Python matcher serves.
    echo "warning: not root, not installing ${needed[*]}; the trackers' C extension will not be built" >&2
    exit 0
  fi
else
  ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1' || needed+=(libgomp1)
fi
if [ -z "${1:-}" ]; then
  command -v chromium >/dev/null 2>&1 || needed+=(chromium)
  test -x /usr/sbin/dovecot || needed+=(dovecot-imapd)
fi
if [ ${#needed[@]} -gt 0 ]; then
  echo "installing system packages: ${needed[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
fi
