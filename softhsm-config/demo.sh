#!/usr/bin/env bash
# The main job end to end on the embedded default (SoftHSM2 + SQLite), on a
# fresh machine: installs SoftHSM2 if needed, builds rkm, makes a fresh token
# in a temporary directory, runs `rkmd init`, serves, and asks `rkm status`.
# Everything it creates is removed at the end, and the daemon is stopped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

module="$(softhsm-config/install.sh)"
cargo build --quiet --bins
bin="$root/target/debug"

work="$(mktemp -d -t rkm-demo-XXXXXX)"
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "a fresh SoftHSM2 token in $work/hsm"
eval "$(softhsm-config/new-token.sh "$work/hsm" rkm)"
export RKM_HSM_MODULE="$module" RKM_STATE_DIR="$work/state"

step "rkmd init: state directory, database, audit key in the HSM"
"$bin/rkmd" init

step "rkmd serve (Unix socket $RKM_STATE_DIR/rkmd.sock)"
"$bin/rkmd" serve 2>"$work/rkmd.log" &
daemon_pid=$!
for _ in $(seq 1 100); do
  [ -S "$RKM_STATE_DIR/rkmd.sock" ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/rkmd.log"; exit 1; }
  sleep 0.1
done

step "rkm status"
"$bin/rkm" status

step "rkmd stops on SIGTERM"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=""
tail -n 2 "$work/rkmd.log"
printf '\ndemo complete\n'
