#!/usr/bin/env bash
# Side-by-side measurements: mailnet next to the reference implementations,
# back to back in one run (the machine is noisy; only ratios from one run count).
#
#   benches/compare.sh [boot|dns|smtp|pop3|pop3-large|relay|all]
#   (SMTP_ROUNDS=N: rounds of the SMTP loads, 6 by default: even, so that
#   mailnet and smtp-sink each go first in half of them)
#
# Needs (Debian): dnsperf, postfix (smtp-source, smtp-sink), dovecot-pop3d;
# (PyPI): aiosmtpd, dnslib. Each part says what it skips when a tool is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
# The release build in CARGO_TARGET_DIR (./target by default), or MAILNET=path as it is.
if [ -z "${MAILNET:-}" ]; then
  cargo build --release -q
  MAILNET=${CARGO_TARGET_DIR:-$PWD/target}/release/mailnet
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

wait_port() { # host port: wait until something accepts there (10 s at most)
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1:$2" >&2; return 1
}

start_mailnet() { # prints the gmail.com SMTP and POP3 ports and the DNS port
  "$MAILNET" --quiet up --ephemeral --data-dir "$work/data" >"$work/up.out" &
  for _ in $(seq 1 200); do grep -q '^ready' "$work/up.out" 2>/dev/null && break; sleep 0.05; done
  local row; row=$(grep '^gmail.com ' "$work/up.out")
  GMAIL_SMTP=$(echo "$row" | awk '{print $3}'); GMAIL_POP3=$(echo "$row" | awk '{print $4}')
  DNS_PORT=$(sed -n 's/.*fake DNS on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/up.out")
}

bench_boot() {
  echo "== boot: process start until every listener accepts and the DNS answers"
  "$MAILNET" bench boot --servers 200 --users 50 --runs 5
}

bench_dns() {
  echo "== DNS: dnsperf, UDP, mix of MX, SRV, A and NXDOMAIN, 10 s each"
  command -v dnsperf >/dev/null || { echo "skipped: dnsperf not installed (apt-get install dnsperf)"; return; }
  start_mailnet
  printf '%s\n' "mail.sustech.edu.cn MX" "_smtp._tcp.mxbiz1.qq.com SRV" "_pop3._tcp.gmail.com SRV" \
    "smtp.exmail.qq.com A" "gmail.com MX" "nobody.gmail.com A" "_submission._tcp.gmail.com SRV" > "$work/queries"
  printf 'mailnet:  '; dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$work/queries" -l 10 -c 4 -Q 200000 2>/dev/null | grep 'Queries per second'
  if python3 -c 'import dnslib' 2>/dev/null; then
    python3 benches/dnslib_server.py 5399 & wait_port 127.0.0.1 5399 2>/dev/null || sleep 1
    printf 'dnslib:   '; dnsperf -s 127.0.0.1 -p 5399 -d "$work/queries" -l 10 -c 4 -Q 200000 2>/dev/null | grep 'Queries per second'
  else
    echo "dnslib:   skipped (pip install dnslib)"
  fi
  kill %1 2>/dev/null; wait 2>/dev/null
}

bench_smtp() {
  local rounds=${SMTP_ROUNDS:-6}
  echo "== SMTP: smtp-source -s 20 -m 20000 -l 1024, then with -d (connection reuse); $rounds rounds, servers alternating"
  command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || { echo "skipped: postfix not installed"; return; }
  export PATH=$PATH:/usr/sbin
  start_mailnet
  smtp-sink -u nobody 127.0.0.1:2599 1000 >/dev/null & wait_port 127.0.0.1 2599
  aiosmtpd_up=0
  if python3 -c 'import aiosmtpd' 2>/dev/null; then
    python3 -m aiosmtpd -n -c aiosmtpd.handlers.Sink -l 127.0.0.1:2598 & wait_port 127.0.0.1 2598 && aiosmtpd_up=1
  fi
  # Rounds rather than one run each: on a shared VM one run can be 10-25% off
  # for any server; the median of alternating rounds is compared. mailnet
  # and smtp-sink swap places every round and aiosmtpd ends each one, so
  # each of the two runs right after aiosmtpd's long run in half of the
  # rounds and right after the other in the other half (with three servers
  # in a fixed or rotated order, one of them followed aiosmtpd more often).
  local pair=("mailnet 127.0.0.1:$GMAIL_SMTP" "smtp-sink 127.0.0.1:2599")
  for flags in "" "-d"; do
    declare -A rates=()
    for round in $(seq "$rounds"); do
      local order=("${pair[@]}" "aiosmtpd 127.0.0.1:2598")
      [ $((round % 2)) = 0 ] && order=("${pair[1]}" "${pair[0]}" "aiosmtpd 127.0.0.1:2598")
      for target in "${order[@]}"; do
        set -- $target
        [ "$1" = aiosmtpd ] && [ $aiosmtpd_up = 0 ] && continue
        start=$(date +%s.%N)
        smtp-source -s 20 -m 20000 -l 1024 $flags -f usr1@gmail.com -t bob@gmail.com "$2" >/dev/null || { echo "$1: smtp-source failed"; continue; }
        end=$(date +%s.%N)
        rate=$(printf '%.0f' "$(echo "20000 / ($end - $start)" | bc -l)")
        rates[$1]="${rates[$1]:-} $rate"
        printf 'round %s %-10s %-3s %8s msgs/s' "$round" "$1" "${flags:-new}" "$rate"
        if [ "$1" = mailnet ]; then
          # Every message was in mailnet's delivery journal before its 250; its
          # Maildir file is made once ingest pauses. Wait for that here, so the
          # next server's run does not share the CPU with it, and say how long.
          journal=$work/data/gmail.com/mail/.deliveries
          while [ "$(stat -c %s "$journal" 2>/dev/null || echo 40)" != 40 ]; do sleep 0.01; done
          printf ', every Maildir file made %.2f s after the last 250' "$(echo "$(date +%s.%N) - $end" | bc -l)"
        fi
        echo
      done
    done
    # The middle rate (the mean of the two middle ones for an even count).
    median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2}'; }
    ratio() { [ "${2:-0}" -gt 0 ] && printf '%.2fx' "$(echo "$1 / $2" | bc -l)" || printf 'n/a'; }
    local m s a
    m=$(median "${rates[mailnet]:-0}"); s=$(median "${rates[smtp-sink]:-0}"); a=$(median "${rates[aiosmtpd]:-0}")
    printf 'median %-3s: mailnet %s, smtp-sink %s, aiosmtpd %s msgs/s; mailnet/smtp-sink %s, mailnet/aiosmtpd %s\n' \
      "${flags:-new}" "$m" "$s" "$a" "$(ratio "$m" "$s")" "$(ratio "$m" "$a")"
    unset rates
  done
  echo "stored by mailnet: $(find "$work/data/gmail.com/mail/bob@gmail.com" -type f | wc -l) messages"
  echo "-- mailnet's own load generator (latency percentiles)"
  "$MAILNET" bench smtp --server "127.0.0.1:$GMAIL_SMTP" -n 20000 -c 20 -s 1024
  "$MAILNET" bench smtp --server "127.0.0.1:2599" -n 20000 -c 20 -s 1024
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
}

bench_pop3() {
  echo "== POP3: RETR throughput and login to a large mailbox (mailnet bench pop3)"
  "$MAILNET" bench pop3 --messages 10000 --size 4096 --login-messages 100000
  bench_pop3_large
  echo "== POP3 sessions/s (poplib: USER, PASS, STAT, RETR 1, QUIT), sequential and 8 clients on 8 mailboxes"
  { echo "dns: 127.0.0.1:0"; echo "servers:"; echo "  - name: bench.test"; echo "    domains: [bench.test]"
    echo "    smtp: { port: 0 }"; echo "    pop3: { port: 0 }"; echo "    policy: { login_delay: 0s }"; echo "    users:"
    for i in 0 1 2 3 4 5 6 7; do echo "      - { address: u$i@bench.test, password: pw }"; done; } > "$work/pop.yaml"
  "$MAILNET" --quiet up "$work/pop.yaml" --data-dir "$work/popdata" >"$work/pop.out" &
  for _ in $(seq 1 200); do grep -q '^ready' "$work/pop.out" 2>/dev/null && break; sleep 0.05; done
  local row; row=$(grep '^bench.test ' "$work/pop.out")
  local smtp pop3; smtp=$(echo "$row" | awk '{print $3}'); pop3=$(echo "$row" | awk '{print $4}')
  python3 - "$smtp" <<'PY'
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    for i in range(8):
        s.sendmail(f"u{i}@bench.test", [f"u{i}@bench.test"], "Subject: pop bench\r\n\r\n" + ("x" * 70 + "\r\n") * 14)
PY
  users=$(for i in 0 1 2 3 4 5 6 7; do printf 'u%s@bench.test:pw ' "$i"; done)
  printf 'mailnet: '; python3 benches/pop3_sessions.py 127.0.0.1 "$pop3" $users
  if [ -x /usr/sbin/dovecot ]; then
    benches/dovecot.sh "$work/dovecot" 2611 >/dev/null 2>&1 & wait_port 127.0.0.1 2611 && {
      printf 'dovecot: '; python3 benches/pop3_sessions.py 127.0.0.1 2611 $users; }
  else
    echo "dovecot: skipped (apt-get install dovecot-pop3d)"
  fi
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
}

bench_pop3_large() { # 10 MiB messages read by curl, which reads in large blocks
  echo "== POP3: RETR of 10 x 10 MiB: each by curl pop3://…/N (connect, login, RETR, QUIT), then in one session reading 1 MiB blocks"
  command -v curl >/dev/null || { echo "skipped: curl not installed"; return; }
  local box="$work/data/gmail.com/mail/hcy@gmail.com"
  mkdir -p "$box/new" "$box/cur" "$box/tmp"
  python3 - "$box/new" <<'PY'
import sys
line = b"The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJ\r\n"
body = b"Subject: big\r\n\r\n" + line * (10 * 1024 * 1024 // len(line))
for i in range(10):
    open(f"{sys.argv[1]}/{i:020}.bench,S={len(body)}", "wb").write(body)
PY
  start_mailnet
  local total=0 bytes=0 n out
  for n in $(seq 1 10); do
    out=$(curl -s "pop3://hcy%40gmail.com:password3@127.0.0.1:$GMAIL_POP3/$n" -o /dev/null -w '%{size_download} %{time_total}')
    bytes=$((bytes + ${out% *})); total=$(echo "$total + ${out#* }" | bc -l)
  done
  printf 'curl:        %d octets in %.3f s: %.0f MB/s\n' "$bytes" "$total" "$(echo "$bytes / $total / 1000000" | bc -l)"
  printf 'large reads: '; python3 benches/pop3_retr.py 127.0.0.1 "$GMAIL_POP3" hcy@gmail.com password3 10
  kill %1 2>/dev/null; wait 2>/dev/null
  rm -rf "$work/data"
}

bench_relay() {
  echo "== relay end to end (exmail.qq.com -> gmail.com), against single-hop ingest in the same run"
  "$MAILNET" --quiet bench smtp -n 5000 -c 20 --reuse
  "$MAILNET" --quiet bench relay -n 5000 -c 1
  "$MAILNET" --quiet bench relay -n 5000 -c 20
  "$MAILNET" --quiet bench relay -n 300 --one-at-a-time
}

case $what in
  boot) bench_boot ;; dns) bench_dns ;; smtp) bench_smtp ;; pop3) bench_pop3 ;; pop3-large) bench_pop3_large ;; relay) bench_relay ;;
  all) bench_boot; bench_dns; bench_smtp; bench_pop3; bench_relay ;;
  *) echo "usage: $0 [boot|dns|smtp|pop3|pop3-large|relay|all]" >&2; exit 2 ;;
esac
