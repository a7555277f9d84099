#!/usr/bin/env bash
# Makes tests/python/.venv, a virtual environment with the pinned packages of
# tests/python/requirements.txt, for tests/tests/grpc_interop.rs. Idempotent:
# when the environment already holds exactly these requirements it does
# nothing. A venv, not a system-wide pip install: it works the same on
# Pythons marked "externally managed" (PEP 668) and leaves the system alone.
# Everything is reported on standard error.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"
installed="$venv/installed-requirements.txt"

if [ -x "$venv/bin/python3" ] && cmp -s "$requirements" "$installed"; then
  exit 0
fi

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "python/install.sh: $* missing and this is not a Debian-like system; install Python 3 with venv support" >&2
    exit 1
  fi
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  echo "python/install.sh: installing $* with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "$@" >&2; then
    "${sudo_cmd[@]}" apt-get update >&2
    "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "$@" >&2
  fi
}

if ! command -v python3 >/dev/null; then
  apt_install python3 python3-venv
fi
rm -rf "$venv"
# Debian's python3 has no ensurepip until python3-venv is installed.
if ! python3 -m venv "$venv" >&2; then
  rm -rf "$venv"
  apt_install python3-venv
  python3 -m venv "$venv" >&2
fi
echo "python/install.sh: installing tests/python/requirements.txt into $venv" >&2
"$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
cp "$requirements" "$installed"
