#!/usr/bin/env bash
# Install the automation clients that tests/test_e2e_update_clients.py drives
# against aliasd's RFC 2136 UPDATE support: certbot with its rfc2136 plugin
# (against pebble, Let's Encrypt's ACME test server) and octoDNS with
# octodns-bind's Rfc2136Provider.
#
# They go into their own virtualenv, .venv-clients beside .venv, so that the
# project's own dependencies stay few; pebble comes from Debian.
# Usage (as root on Debian, from anywhere): bash tests/clients/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! dpkg -s pebble >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends pebble
fi

python3 -m venv .venv-clients
.venv-clients/bin/pip install -q -r tests/clients/requirements.txt
