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

step "three key custodians make their identities (demo passphrases in files; people use the prompt)"
names=(alice bob carol)
for name in "${names[@]}"; do
  mkdir -p "$work/$name"
  printf 'demo passphrase of %s\n' "$name" >"$work/$name/passphrase"
  "$bin/rkm" custodian init --name "$name" --identity "$work/$name/identity" \
    --card "$work/$name/card.json" --passphrase-file "$work/$name/passphrase"
  "$bin/rkm" custodian enrol "$work/$name/card.json"
done

step "key generation ceremony: 2-of-3"
"$bin/rkm" key create --label demo-root --threshold 2 --custodians alice,bob,carol
for name in "${names[@]}"; do
  "$bin/rkm" share fetch --key demo-root --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase" --share-dir "$work/$name/shares"
done
"$bin/rkm" key show demo-root

step "between ceremonies: custodians check their shares offline and attest them"
for name in alice bob; do
  "$bin/rkm" share verify --key demo-root --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase" --share-dir "$work/$name/shares" --attest
done
"$bin/rkm" status | sed -n '/share attestations/,$p'

step "recovery ceremony: replace the trust anchor on 1,000 devices"
seq -f 'meter-%06g' 1 1000 >"$work/devices.txt"
cat >"$work/request.toml" <<TOML
reason = "Demo: the issuing CA key is considered compromised"
incident = "DEMO-1"
not_before = "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
not_after = "$(date -u -d '+7 days' +%Y-%m-%dT%H:%M:%SZ)"

[command]
kind = "revoke-certificate"
issuer = "CN=Demo Issuing CA"
serial = "0a1b2c3d"
TOML
ceremony=$("$bin/rkm" --output json recovery open --key demo-root --request "$work/request.toml" \
  --targets "$work/devices.txt" --expires 1h | python3 -c 'import json,sys; print(json.load(sys.stdin)["ceremony_id"])')
echo "ceremony $ceremony"
for name in alice bob; do
  "$bin/rkm" recovery approve "$ceremony" --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase" --share-dir "$work/$name/shares" --yes
done
"$bin/rkm" recovery collect "$ceremony" -o "$work/demo-root.rkma"

step "offline verification: the artefact"
vkey=$("$bin/rkm" --output json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["audit_key"]["verifier_key"])')
key_record=$(ls "$work"/alice/shares/*/key-record.json)
"$bin/rkm" artefact verify "$work/demo-root.rkma" --key-record "$key_record" --audit-key "$vkey"

step "recovery drill: the quorum unwraps the key, which signs a drill challenge and no command"
drill=$("$bin/rkm" --output json drill open --key demo-root --expires 1h --reason "Demo drill" \
  --incident DEMO-DRILL | python3 -c 'import json,sys; print(json.load(sys.stdin)["ceremony_id"])')
for name in bob carol; do
  "$bin/rkm" --output json recovery approve "$drill" --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase" --share-dir "$work/$name/shares" --yes >/dev/null
done
"$bin/rkm" recovery collect "$drill" -o "$work/drill.rkma" >/dev/null
"$bin/rkm" drill report "$drill"
"$bin/rkm" artefact verify "$work/drill.rkma" --key-record "$key_record" --audit-key "$vkey" | tail -n 1

step "offline verification: the audit log"
"$bin/rkm" audit fetch -o "$work/audit.log" --audit-key "$vkey"
"$bin/rkm" audit verify "$work/audit.log" --audit-key "$vkey"

step "rkmd stops on SIGTERM"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=""
tail -n 2 "$work/rkmd.log"
printf '\ndemo complete\n'
