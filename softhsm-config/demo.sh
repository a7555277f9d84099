#!/usr/bin/env bash
# The main job end to end on the embedded default (SoftHSM2 + SQLite), on a
# fresh machine: installs SoftHSM2 if needed, builds rkm, makes a fresh token
# and a development PKI in a temporary directory, runs `rkmd init`, serves on
# loopback TCP with TLS 1.3, and runs a key ceremony, a recovery, a drill and
# an audit verification. The admin, operator and auditor use their client
# certificates; each custodian works from their own HOME, as if from their
# own machine, with rkmd's certificate pinned by the fingerprint the operator
# gave them. Everything it creates is removed at the end, and the daemon is
# stopped.
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

step "a development PKI: a CA, rkmd's server certificate, admin/operator/auditor client certificates"
fingerprint=$("$bin/rkmd" dev-pki "$work/pki" | tee /dev/stderr | sed -n 's/^server certificate //p')
pki="$work/pki"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="https://127.0.0.1:$port"
step "rkmd serve: TLS 1.3 on $endpoint, and the Unix socket for local administration"
RKM_LISTEN_TCP="127.0.0.1:$port" "$bin/rkmd" --config "$pki/rkmd-tls.toml" serve 2>"$work/rkmd.log" &
daemon_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on TCP" "$work/rkmd.log" 2>/dev/null && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/rkmd.log"; exit 1; }
  sleep 0.1
done
unset RKM_STATE_DIR

# Staff present their certificate; custodians have none and sign each request.
as_staff() {
  local role=$1
  shift
  "$bin/rkm" --endpoint "$endpoint" --ca "$pki/ca.pem" \
    --cert "$pki/$role.pem" --cert-key "$pki/$role-key.pem" "$@"
}
admin() { as_staff admin "$@"; }
operator() { as_staff operator "$@"; }
auditor() { as_staff auditor "$@"; }
custodian() {
  local name=$1
  shift
  HOME="$work/$name" "$bin/rkm" --endpoint "$endpoint" --server-fingerprint "$fingerprint" "$@"
}

step "operator: rkm status over TLS"
operator status

step "three key custodians make their identities (demo passphrases in files; people use the prompt)"
names=(alice bob carol)
for name in "${names[@]}"; do
  mkdir -p "$work/$name"
  printf 'demo passphrase of %s\n' "$name" >"$work/$name/passphrase"
  chmod 600 "$work/$name/passphrase"
  custodian "$name" custodian init --name "$name" --identity "$work/$name/identity" \
    --card "$work/$name/card.json" --passphrase-file "$work/$name/passphrase"
  admin custodian enrol "$work/$name/card.json"
done

step "key generation ceremony: 2-of-3"
operator key create --label demo-root --threshold 2 --custodians alice,bob,carol
for name in "${names[@]}"; do
  custodian "$name" share fetch --key demo-root --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase"
done
operator key show demo-root

step "between ceremonies: custodians check their shares offline and attest them"
for name in alice bob; do
  custodian "$name" share verify --key demo-root --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase" --attest
done
auditor status | sed -n '/share attestations/,$p'

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
ceremony=$(operator --output json recovery open --key demo-root --request "$work/request.toml" \
  --targets "$work/devices.txt" --expires 1h | python3 -c 'import json,sys; print(json.load(sys.stdin)["ceremony_id"])')
echo "ceremony $ceremony"
custodian alice recovery list --identity "$work/alice/identity" --passphrase-file "$work/alice/passphrase"
for name in alice bob; do
  custodian "$name" recovery approve "$ceremony" --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase" --yes
done
operator recovery collect "$ceremony" -o "$work/demo-root.rkma"

step "offline verification: the artefact"
vkey=$(auditor --output json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["audit_key"]["verifier_key"])')
key_record=$(ls "$work"/alice/.local/share/rkm/shares/*/key-record.json)
"$bin/rkm" artefact verify "$work/demo-root.rkma" --key-record "$key_record" --audit-key "$vkey"

step "recovery drill: the quorum unwraps the key, which signs a drill challenge and no command"
drill=$(operator --output json drill open --key demo-root --expires 1h --reason "Demo drill" \
  --incident DEMO-DRILL | python3 -c 'import json,sys; print(json.load(sys.stdin)["ceremony_id"])')
for name in bob carol; do
  custodian "$name" --output json recovery approve "$drill" --identity "$work/$name/identity" \
    --passphrase-file "$work/$name/passphrase" --yes >/dev/null
done
operator recovery collect "$drill" -o "$work/drill.rkma" >/dev/null
auditor drill report "$drill"
"$bin/rkm" artefact verify "$work/drill.rkma" --key-record "$key_record" --audit-key "$vkey" | tail -n 1

step "offline verification: the audit log"
auditor audit fetch -o "$work/audit.log" --audit-key "$vkey"
"$bin/rkm" audit verify "$work/audit.log" --audit-key "$vkey"

step "rkmd stops on SIGTERM"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=""
tail -n 2 "$work/rkmd.log"
printf '\ndemo complete\n'
