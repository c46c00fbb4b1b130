#!/usr/bin/env bash
# Runs inside a private mount namespace (unshare --mount), as root: the
# system trust store is replaced by empty tmpfs folders for the test, so
# `mailnet ca --install` and `--uninstall` touch nothing outside it.
# Usage: ca_install.sh MAILNET_BINARY
set -euo pipefail
bin=$1
mount --make-rprivate /
mount -t tmpfs none /usr/local/share/ca-certificates
mount -t tmpfs none /etc/ssl/certs
export MAILNET_CA_DIR
MAILNET_CA_DIR=$(mktemp -d)
trap 'rm -rf "$MAILNET_CA_DIR"' EXIT
ca=$("$bin" ca --path)
# The CA's base64 body, one line of it, to look for in the bundle.
line=$(sed -n 2p "$ca")
"$bin" ca --install >/dev/null 2>&1
grep -qF "$line" /etc/ssl/certs/ca-certificates.crt && echo "installed: in the system bundle"
openssl verify -CApath /etc/ssl/certs "$ca" >/dev/null && echo "installed: openssl trusts it"
"$bin" ca --uninstall >/dev/null 2>&1
grep -qF "$line" /etc/ssl/certs/ca-certificates.crt || echo "uninstalled: gone from the bundle"
