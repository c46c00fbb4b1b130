#!/usr/bin/env bash
# Runs inside a fresh network namespace (unshare --net), as root: boots
# `mailnet up --standard-ports`, then finds servers the way a real MTA does
# (MX, then A, port 25) with dig, relays with smtplib and reads with poplib
# on port 110. Usage: standard_ports.sh MAILNET_BINARY
set -euo pipefail
bin=$1
ip link set lo up
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin" --quiet up --standard-ports --data-dir "$data/mail" >"$data/out" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q '^ready' "$data/out" 2>/dev/null && break
  kill -0 "$pid" || { cat "$data/out"; exit 1; }
  read -rt 0.1 <> <(:) || true   # a tenth of a second, without sleep(1)
done
grep -q '^ready' "$data/out" || { cat "$data/out"; exit 1; }
grep '^addresses: ' "$data/out"
mx=$(dig @127.0.0.1 -p 53 +short gmail.com MX | awk '{print $2}')
addr=$(dig @127.0.0.1 -p 53 +short "$mx" A)
echo "mx $mx $addr"
submission=$(dig @127.0.0.1 -p 53 +short _submission._tcp.mail.sustech.edu.cn SRV)
echo "submission $submission"
[ "$(echo "$submission" | awk '{print $3}')" = 587 ] || { echo "SRV _submission is not port 587"; exit 1; }
python3 - "$addr" <<'PY'
import poplib, smtplib, sys, time
gmail = sys.argv[1]
with smtplib.SMTP("127.0.0.2", 25, timeout=10) as s:   # exmail.qq.com, the first server
    s.sendmail("usr1@mail.sustech.edu.cn", ["usr1@gmail.com"], b"Subject: by MX\r\n\r\nport 25\r\n")
# A mail user agent submits on 587 (RFC 6409), logged in.
with smtplib.SMTP("127.0.0.2", 587, timeout=10) as s:
    s.login("usr1@mail.sustech.edu.cn", "password1")
    s.sendmail("usr1@mail.sustech.edu.cn", ["usr1@gmail.com"], b"Subject: submitted\r\n\r\nport 587\r\n")
deadline = time.time() + 15
while True:
    p = poplib.POP3(gmail, 110, timeout=10)
    p.user("usr1@gmail.com"); p.pass_("password1")
    count = p.stat()[0]
    p.quit()
    if count == 2:
        print("relayed by MX to", gmail, "port 25, submitted on port 587, read on port 110")
        break
    if time.time() > deadline:
        sys.exit(f"{count} of 2 messages arrived")
    time.sleep(0.05)
PY
