#!/usr/bin/env bash
# Makes a fresh, isolated SoftHSM2 token for development:
#   softhsm-config/new-token.sh DIR [LABEL]
# creates DIR/tokens, DIR/softhsm2.conf and a token labelled LABEL (default
# "rkm"), with random PINs stored in DIR/user.pin and DIR/so.pin (mode 0600).
# Prints the lines to export. The token is found by label, never by slot.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:?usage: new-token.sh DIR [LABEL]}"
label="${2:-rkm}"

mkdir -p "$dir/tokens"
dir="$(cd "$dir" && pwd)"
umask 077
sed "s|@TOKENDIR@|$dir/tokens|" "$here/softhsm2.conf.template" >"$dir/softhsm2.conf"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/user.pin"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/so.pin"
# softhsm2-util takes PINs only as arguments or at a prompt; these are
# development tokens on this machine, and the PINs are random per token.
SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free \
  --label "$label" --so-pin "$(cat "$dir/so.pin")" --pin "$(cat "$dir/user.pin")" >&2
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "export RKM_HSM_TOKEN_LABEL=$label"
echo "export RKM_HSM_PIN_FILE=$dir/user.pin"
