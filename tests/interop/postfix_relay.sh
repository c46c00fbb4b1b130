#!/usr/bin/env bash
# Postfix and mailnet relay mail to each other, both ways, by plain MX lookups.
#
# Run as root inside fresh namespaces, so nothing on the host changes and
# everything dies with the script:
#
#   unshare --net --mount --pid --fork --kill-child --mount-proc \
#       tests/interop/postfix_relay.sh MAILNET_BINARY
#
#   --net    a loopback of our own: mailnet's servers take 127.0.0.2-4:25/110
#            and its fake DNS 127.0.0.1:53 without meeting anything on the host;
#   --mount  /etc/resolv.conf is replaced (bind mount, private to us) by one
#            naming 127.0.0.1, so Postfix's resolver asks mailnet's fake DNS;
#   --pid    when this script (pid 1 there) exits, the kernel kills whatever
#            is left, and --kill-child makes it exit if unshare is killed: a
#            Postfix or mailnet can never outlive the test.
#
# The network (below) has three servers. mailnet runs two, exmail.qq.com
# (127.0.0.2, domain mail.sustech.edu.cn) and gmail.com (127.0.0.3); the
# third, postfix.test, is `--skip`ped: mailnet publishes its MX and address
# (127.0.0.4) but leaves it to a private Postfix instance (own config, queue
# and mailbox directories in a temporary directory; no chroot, so it reads
# the namespace's /etc/resolv.conf) listening on exactly that address.
#
#   1. Postfix -> mailnet: smtplib submits to Postfix (127.0.0.4:25) for
#      usr1@gmail.com; Postfix looks up MX gmail.com in the fake DNS and
#      delivers to 127.0.0.3:25; poplib reads it on 127.0.0.3:110 and the
#      Received: fields show Postfix's hop and mailnet's.
#   2. mailnet -> Postfix: smtplib submits to exmail.qq.com (127.0.0.2:25)
#      for alice@postfix.test; mailnet's relay looks up MX postfix.test and
#      delivers to Postfix, which stores it in a Maildir; the file shows
#      mailnet's hop and Postfix's.
#
# Every wait is a poll with a deadline. Prints one line per fact checked;
# the last is "postfix relay checks passed". On failure, prints mailnet's
# output and Postfix's log. Usage: postfix_relay.sh MAILNET_BINARY
set -euo pipefail
bin=$1
export PATH="$PATH:/usr/sbin:/sbin"

# A tenth of a second, without sleep(1).
nap() { read -rt 0.1 <> <(:) || true; }
# until_ok SECONDS COMMAND...: polls COMMAND until it succeeds; fails after SECONDS.
until_ok() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    nap
  done
}

tmp=$(mktemp -d)
chmod 755 "$tmp"          # Postfix's daemons (user postfix, nobody) walk through it
cfg=$tmp/postfix          # Postfix's config_directory (main.cf, master.cf)
vmail=$tmp/vmail          # virtual_mailbox_base: alice@postfix.test's Maildir lives here
mkdir -p "$cfg" "$tmp/queue" "$tmp/data" "$vmail"
chown postfix "$tmp/data"
chown nobody:nogroup "$vmail"
mailnet_pid=

postfix_running() { postfix -c "$cfg" status >/dev/null 2>&1; }
cleanup() {
  local status=$?
  set +e
  # Postfix first: `stop` asks the master to end its children, then we wait
  # for it to be gone (the pid namespace would kill it anyway, but not cleanly).
  if [ -f "$cfg/main.cf" ] && postfix_running; then
    postfix -c "$cfg" stop >/dev/null 2>&1
    until_ok 10 eval '! postfix_running' || echo "postfix did not stop" >&2
  fi
  if [ -n "$mailnet_pid" ]; then
    kill "$mailnet_pid" 2>/dev/null
    wait "$mailnet_pid" 2>/dev/null
  fi
  if [ "$status" -ne 0 ]; then
    echo "--- mailnet output" >&2
    cat "$tmp/mailnet.out" >&2 2>/dev/null
    echo "--- postfix log" >&2
    cat "$tmp/maillog" >&2 2>/dev/null
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT

ip link set lo up
# Our resolver: mailnet's fake DNS. The bind mount is private to this mount
# namespace (unshare makes propagation private), so the host keeps its own.
printf 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n' >"$tmp/resolv.conf"
mount --bind "$tmp/resolv.conf" /etc/resolv.conf

# --- mailnet: the network, with postfix.test published but not run --------
# Ports must differ in the file; --standard-ports replaces them with 25/110
# and gives the servers 127.0.0.2, .3, .4 in this order.
cat >"$tmp/network.yaml" <<'YAML'
servers:
  - name: exmail.qq.com
    domains: [mail.sustech.edu.cn]
    mx: mxbiz1.qq.com
    smtp: { port: 1125 }
    pop3: { port: 1210 }
    users:
      - { address: usr1@mail.sustech.edu.cn, password: password1 }
  - name: gmail.com
    domains: [gmail.com]
    mx: gmail-smtp-in.l.google.com
    smtp: { port: 2125 }
    pop3: { port: 2210 }
    users:
      - { address: usr1@gmail.com, password: password1 }
  # Served by Postfix: mailnet only publishes it (MX, A, SRV).
  - name: postfix.test
    domains: [postfix.test]
    mx: mx.postfix.test
    smtp: { port: 3125 }
    pop3: { port: 3210 }
YAML
"$bin" --quiet up "$tmp/network.yaml" --standard-ports --skip postfix.test \
  --data-dir "$tmp/mail" >"$tmp/mailnet.out" 2>&1 &
mailnet_pid=$!
mailnet_ready() {
  kill -0 "$mailnet_pid" || { echo "mailnet exited" >&2; exit 1; }
  grep -qs '^ready' "$tmp/mailnet.out"   # -s: the file may not exist yet
}
until_ok 20 mailnet_ready
grep '^addresses: ' "$tmp/mailnet.out"
# "skipped: postfix.test 127.0.0.4 SMTP 25 POP3 110 (...)": where Postfix must listen.
skipped=$(grep '^skipped: postfix.test ' "$tmp/mailnet.out")
echo "$skipped"
addr=$(awk '{print $3}' <<<"$skipped")

# What any MTA would find: MX, then A. Postfix must be where the DNS says.
mx=$(dig @127.0.0.1 +short postfix.test MX | awk '{print $2}')
mx_addr=$(dig @127.0.0.1 +short "$mx" A)
echo "mx postfix.test $mx $mx_addr"
[ "$mx_addr" = "$addr" ] || { echo "DNS says $mx_addr, the table $addr" >&2; exit 1; }

# --- Postfix: a private instance on $addr:25 -------------------------------
# Linux answers on all of 127/8, but Postfix only listens on an address an
# interface carries (inet_interfaces), so lo gets this one explicitly.
ip addr add "$addr/32" dev lo
# Only the programs and the postfix/postdrop accounts of the installed
# package are used; its own /etc/postfix (if any) is never read or changed.
cat >"$cfg/main.cf" <<EOF
# Level 2, not 3.6: also valid on Postfix 3.4/3.5 (maillog_file needs 3.4).
compatibility_level = 2
queue_directory = $tmp/queue
data_directory = $tmp/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
mydomain = postfix.test
myorigin = \$mydomain
mydestination =
# Listen (and send from) exactly the address mailnet published for postfix.test.
inet_interfaces = $addr
inet_protocols = ipv4
smtp_bind_address = $addr
# Who may relay through it without AUTH: clients on loopback (our smtplib).
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
# alice@postfix.test: a Maildir under $vmail, owned by nobody.
virtual_mailbox_domains = postfix.test
virtual_mailbox_base = $vmail
virtual_mailbox_maps = texthash:$cfg/vmailbox
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
alias_maps =
alias_database =
biff = no
# Log to a file of ours (there is no syslog here).
maillog_file = $tmp/maillog
maillog_file_prefixes = $tmp
# Should a first attempt fail, retry within a second, not Postfix's minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
# UTF-8 addresses only from a client that declared SMTPUTF8 (else 553 5.6.7):
# mailnet's relay must pass SMTPUTF8 on.
smtputf8_enable = yes
strict_smtputf8 = yes
EOF
printf '%s\n' "alice@postfix.test alice/" "用户@postfix.test yonghu/" >"$cfg/vmailbox"
# Debian's master.cf chroots most daemons into the queue directory (which
# would need its own etc/resolv.conf); ours chroots nothing.
cat >"$cfg/master.cf" <<'EOF'
# service  type  private unpriv chroot wakeup maxproc command
smtp       inet  n       -      n      -      -       smtpd
pickup     unix  n       -      n      60     1       pickup
cleanup    unix  n       -      n      -      0       cleanup
qmgr       unix  n       -      n      300    1       qmgr
rewrite    unix  -       -      n      -      -       trivial-rewrite
bounce     unix  -       -      n      -      0       bounce
defer      unix  -       -      n      -      0       bounce
trace      unix  -       -      n      -      0       bounce
verify     unix  -       -      n      -      1       verify
flush      unix  n       -      n      1000?  0       flush
proxymap   unix  -       -      n      -      -       proxymap
proxywrite unix  -       -      n      -      1       proxymap
smtp       unix  -       -      n      -      -       smtp
relay      unix  -       -      n      -      -       smtp
showq      unix  n       -      n      -      -       showq
error      unix  -       -      n      -      -       error
retry      unix  -       -      n      -      -       error
discard    unix  -       -      n      -      -       discard
local      unix  -       n      n      -      -       local
virtual    unix  -       n      n      -      -       virtual
anvil      unix  -       -      n      -      1       anvil
scache     unix  -       -      n      -      1       scache
postlog    unix-dgram n  -      n      -      1       postlogd
EOF
# Once running, Postfix (postfix-script, master, every daemon) logs to
# $tmp/maillog. A configuration it refuses outright goes to syslog (absent
# here) and to stderr only when that is a terminal: then `postfix check`
# runs again on one (script(1)) to say why. (Not run first: it takes seconds.)
postfix -c "$cfg" start >/dev/null 2>&1 || {
  script -qec "postfix -c $cfg check" /dev/null >&2
  exit 1
}
# Ready when its SMTP greeting arrives on $addr:25.
postfix_greets() {
  local line
  { exec 3<>"/dev/tcp/$addr/25"; } 2>/dev/null || return 1
  read -rt 5 line <&3 || line=
  printf 'QUIT\r\n' >&3 || true
  exec 3<&- 3>&-
  [[ $line == 220* ]]
}
until_ok 20 postfix_greets
echo "postfix $(postconf -c "$cfg" -h mail_version) listening on $addr:25"

# --- 1. Postfix -> mailnet, and 2. mailnet -> Postfix -----------------------
python3 - "$addr" "$vmail/alice" "$vmail/yonghu" <<'PY'
import email, email.policy, glob, poplib, smtplib, sys, time

postfix, maildir, utf8_maildir = sys.argv[1], sys.argv[2], sys.argv[3]

def received(msg):
    """The Received: fields, unfolded, newest first."""
    return [" ".join(str(r).split()) for r in msg.get_all("Received", [])]

def poll(what, probe, seconds=30):
    deadline = time.time() + seconds
    while True:
        found = probe()
        if found:
            return found
        if time.time() > deadline:
            sys.exit(f"{what}: not within {seconds}s")
        time.sleep(0.1)

# 1. Submitted to Postfix; Postfix finds gmail.com by MX (127.0.0.3:25).
with smtplib.SMTP(postfix, 25, timeout=10) as s:
    s.sendmail("alice@postfix.test", ["usr1@gmail.com"],
               b"From: alice@postfix.test\r\nTo: usr1@gmail.com\r\n"
               b"Subject: postfix to mailnet\r\n\r\nvia Postfix\r\n")

def pop_gmail():
    p = poplib.POP3("127.0.0.3", 110, timeout=10)
    try:
        p.user("usr1@gmail.com"); p.pass_("password1")
        for i in range(1, p.stat()[0] + 1):
            raw = b"\r\n".join(p.retr(i)[1])
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            if msg["Subject"] == "postfix to mailnet":
                return msg
    finally:
        p.quit()

msg = poll("usr1@gmail.com never got Postfix's message", pop_gmail)
hops = received(msg)
print("postfix to mailnet: usr1@gmail.com read it on 127.0.0.3:110")
for h in hops:
    print("  Received:", h)
mailnet_hop, postfix_hop = hops[0], hops[1]
assert mailnet_hop.startswith(f"from mx.postfix.test ([{postfix}]) by gmail.com (mailnet) with ESMTP"), mailnet_hop
assert " by mx.postfix.test (Postfix) with ESMTP" in postfix_hop, postfix_hop
print(f"mailnet hop: from mx.postfix.test ([{postfix}]) by gmail.com (mailnet)")
print("postfix hop: by mx.postfix.test (Postfix)")

# 2. Submitted to mailnet's exmail.qq.com; its relay finds postfix.test by MX.
with smtplib.SMTP("127.0.0.2", 25, timeout=10) as s:
    s.sendmail("usr1@mail.sustech.edu.cn", ["alice@postfix.test"],
               b"From: usr1@mail.sustech.edu.cn\r\nTo: alice@postfix.test\r\n"
               b"Subject: mailnet to postfix\r\n\r\nvia mailnet\r\n")

path = poll("alice@postfix.test's Maildir never got mailnet's message",
            lambda: glob.glob(maildir + "/new/*"))[0]
with open(path, "rb") as f:
    msg = email.message_from_bytes(f.read(), policy=email.policy.default)
assert msg["Subject"] == "mailnet to postfix", msg["Subject"]
assert "via mailnet" in msg.get_content(), msg.get_content()
hops = received(msg)
print("mailnet to postfix: alice@postfix.test has it in Postfix's Maildir")
for h in hops:
    print("  Received:", h)
postfix_hop, mailnet_hop = hops[0], hops[1]
assert postfix_hop.startswith("from exmail.qq.com (") and " by mx.postfix.test (Postfix) with ESMTP" in postfix_hop, postfix_hop
assert " by exmail.qq.com (mailnet) with ESMTP" in mailnet_hop, mailnet_hop
print("postfix hop: from exmail.qq.com by mx.postfix.test (Postfix)")
print("mailnet hop: by exmail.qq.com (mailnet)")

# 3. A UTF-8 recipient through mailnet into Postfix with strict_smtputf8.
sent = "From: usr1@mail.sustech.edu.cn\r\nTo: 用户@postfix.test\r\nSubject: 你好\r\n\r\nnaïve\r\n".encode()
with smtplib.SMTP("127.0.0.2", 25, timeout=10) as s:
    s.sendmail("usr1@mail.sustech.edu.cn", ["用户@postfix.test"], sent, mail_options=["SMTPUTF8"])
path = poll("用户@postfix.test's Maildir never got the UTF-8 message",
            lambda: glob.glob(utf8_maildir + "/new/*"))[0]
with open(path, "rb") as f:
    stored = f.read()
msg = email.message_from_bytes(stored, policy=email.policy.default)
assert msg["To"] == "用户@postfix.test" and msg["Subject"] == "你好", stored
assert stored.endswith("\n\nnaïve\n".encode()), stored
assert " by mx.postfix.test (Postfix) with UTF8SMTP " in received(msg)[0], received(msg)[0]
print("utf8 to postfix: 用户@postfix.test has it, SMTPUTF8 passed on to strict_smtputf8")
PY
# Postfix's own word on how it reached gmail.com: the MX host and its address
# from the fake DNS ("relay=gmail-smtp-in.l.google.com[127.0.0.3]:25").
sent_line() { grep -o 'to=<usr1@gmail.com>, relay=[^ ]*, .*status=sent' "$tmp/maillog"; }
until_ok 10 sent_line >/dev/null
sent_line | sed -E 's/^(to=<[^>]*>), (relay=[^,]*), .*(status=sent).*/postfix log: \1 \2 \3/'
echo "postfix relay checks passed"
