#!/usr/bin/env bash
# Install the automation clients that tests/test_e2e_update_clients.py drives
# against aliasd's RFC 2136 UPDATE support: certbot with its rfc2136 plugin
# (against pebble, Let's Encrypt's ACME test server) and octoDNS with
# octodns-bind's Rfc2136Provider; and those tests/test_e2e_api_clients.py
# drives through the PowerDNS HTTP API: octoDNS with octodns-powerdns,
# dns-lexicon, and lego (pdns provider, against pebble).
#
# They go into their own virtualenv, .venv-clients beside .venv, so that the
# project's own dependencies stay few; pebble and lego come from Debian.
# Usage (as root on Debian, from anywhere): bash tests/clients/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for p in pebble lego; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m venv .venv-clients
.venv-clients/bin/pip install -q -r tests/clients/requirements.txt
