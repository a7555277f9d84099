#!/usr/bin/env bash
# Installs SoftHSM2 when its PKCS#11 module is missing, Debian's age, and the
# Python gRPC client the interop test runs (tests/python/install.sh), then prints the
# module's path. Idempotent: on a machine that has both it only prints the
# path. Everything else goes to standard error.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Installs one Debian package, updating the package lists only if needed.
apt_install() {
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  echo "install.sh: installing $1 with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "$1" >&2; then
    "${sudo_cmd[@]}" apt-get update >&2
    "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "$1" >&2
  fi
}

find_module() {
  local candidate
  for candidate in \
    "${RKM_HSM_MODULE:-}" \
    /usr/lib/softhsm/libsofthsm2.so \
    /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/local/lib/softhsm/libsofthsm2.so \
    /opt/homebrew/lib/softhsm/libsofthsm2.so; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! find_module >/dev/null || ! command -v softhsm2-util >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "install.sh: SoftHSM2 is missing and this is not a Debian-like system; install softhsm2 with your package manager" >&2
    exit 1
  fi
  apt_install softhsm2
fi

# Debian's age, for the test that a custodian opens their share with stock
# age alone (tests/tests/age_interop.rs).
if ! command -v age >/dev/null && command -v apt-get >/dev/null; then
  apt_install age
fi

"$here/../tests/python/install.sh" >&2

find_module || {
  echo "install.sh: softhsm2 is installed but libsofthsm2.so was not found; dpkg -L libsofthsm2 shows where it is; set RKM_HSM_MODULE to it" >&2
  exit 1
}
