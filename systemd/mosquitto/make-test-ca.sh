#!/bin/sh
# Make a test CA, a broker certificate and client certificates for a gated site broker.
#
#   systemd/mosquitto/make-test-ca.sh OUTDIR [--server-name NAME] CLIENT...
#
# OUTDIR gets ca.crt/ca.key, server.crt/server.key (CN and SAN: the server name, default localhost,
# plus IP 127.0.0.1), and CLIENT.crt/CLIENT.key for each client. The broker takes a client's CN as
# its user name and client id (use_identity_as_username, use_username_as_clientid), so name gate
# certificates after the gate id (g1, g2...), and the central identities `central` (publisher,
# commands), `beacon` (gated beacon) and `ledger` (one per ledger process; make-dynsec.py --ledger).
# The access rules for these names: make-dynsec.py.
# EC P-256 keys, mode 0600. For tests and trials: a real site keeps its CA key offline.
set -eu

[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--server-name NAME] CLIENT..." >&2; exit 2; }
out=$1; shift
server=localhost
if [ "${1:-}" = "--server-name" ]; then server=$2; shift 2; fi

mkdir -p "$out"
cd "$out"
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f ca.key ]; then
    newkey ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=gated test CA" -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

sign() {  # sign NAME SUBJECT EXTFILE
    newkey "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 825 \
        -extfile "$3" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr"
}

ext=$(mktemp)
trap 'rm -f "$ext"' EXIT
printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' \
    "$server" > "$ext"
sign server "/CN=$server" "$ext"

printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n' > "$ext"
for client in "$@"; do
    sign "$client" "/CN=$client" "$ext"
done
chmod 644 ca.crt server.crt
for client in "$@"; do chmod 644 "$client.crt"; done
echo "$out: ca.crt server.crt${*:+ $(printf '%s.crt ' "$@")}"
