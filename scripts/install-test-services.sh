#!/usr/bin/env bash
# Installs the server binaries the integration tests start themselves (PostgreSQL).
# The tests start and stop their own throwaway servers; nothing here starts a service.
set -euo pipefail

have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }

missing=()
have_postgres || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "error: ${missing[*]} missing and not root; install them with your package manager" >&2
        exit 1
    fi
else
    SUDO=
fi
echo "installing test services: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged service on install; the tests run their own instance.
$SUDO service postgresql stop >/dev/null 2>&1 || true
