#!/usr/bin/env bash
# Install the Debian packages Waggle needs, when they are missing.
#   --runtime   only what the server itself needs (OpenMP for LightGBM)
#   (default)   also what the test suite drives (Chromium, Dovecot)
set -euo pipefail
needed=()
ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1' || needed+=(libgomp1)
if [ "${1:-}" != "--runtime" ]; then
  command -v chromium >/dev/null 2>&1 || needed+=(chromium)
  test -x /usr/sbin/dovecot || needed+=(dovecot-imapd)
fi
if [ ${#needed[@]} -gt 0 ]; then
  echo "installing system packages: ${needed[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
fi
