#!/usr/bin/env python3
"""Real machines on one box: a class hub and two students' networks, each in
a Linux network namespace of its own, joined by a bridge.

Usage: hub_netns.py MAILNET_BINARY   (as root)

Namespaces (unique names, documentation addresses only; the host's own
network is never touched):

    switch   a bridge, with one veth (v-hub, v-alice, v-bob, v-client) per machine
    hub      192.0.2.1   mailnet hub
    alice    192.0.2.2   mailnet up alice.yaml --join 192.0.2.1:53   (alice.test)
    bob      192.0.2.3   mailnet up bob.yaml --join 192.0.2.1:53     (bob.test)
    client   192.0.2.4   dig, nsupdate, smtplib, mailnet send/fetch

Every machine has its own MAILNET_CA_DIR, as real machines have their own
home directories. Prints one `ok: ...` line per check; exits non-zero on the
first failure with the tail of every process's output. Every namespace and
every process started here is removed on exit, failed or not.
"""
import ctypes
import email
import email.policy
import os
import poplib
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

HUB, ALICE, BOB, CLIENT = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"
ADDRESSES = {"hub": HUB, "alice": ALICE, "bob": BOB, "client": CLIENT}
UNREACHABLE = "192.0.2.99"
POLL = 0.05

NET_FILE = """\
dns: 127.0.0.1:5300
bind: {ip}
servers:
  - name: mail.{domain}
    domains: [{domain}]
    mx: mx.{domain}
    smtp: {{ host: smtp.{domain}, port: {smtp} }}
    pop3: {{ host: pop.{domain}, port: {pop3} }}
    users:
      - {{ address: {user}, password: {password} }}
    policy: {{ retry_initial: 1s, retry_max: 2s }}
"""


class Failed(Exception):
    """A check failed: the message says which and why."""


def check(cond, what, detail=""):
    if not cond:
        raise Failed(f"{what}{': ' + detail if detail else ''}")
    print(f"ok: {what}", flush=True)


def wait_for(what, seconds, probe):
    """Polls `probe` until it returns something true, for at most `seconds`."""
    end = time.monotonic() + seconds
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (OSError, EOFError, smtplib.SMTPException, poplib.error_proto) as e:
            last = e
        if time.monotonic() > end:
            raise Failed(f"{what}: not within {seconds} s" + (f" (last error: {last!r})" if last else ""))
        time.sleep(POLL)


# --- Running Python code inside a namespace -------------------------------

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _enter(ns):
    """Moves the calling thread (only) into network namespace `ns`."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "setns"):  # Python 3.12+
            os.setns(fd, CLONE_NEWNET)
        elif _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_ns(ns, fn, *args):
    """Runs fn(*args) in a fresh thread inside `ns`: the sockets it opens
    live there. The thread ends with the call, so no other code runs there."""
    box = {}

    def body():
        try:
            _enter(ns)
            box["value"] = fn(*args)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- Mail clients (called through in_ns) ----------------------------------


def submit(host, port, sender, recipient, subject, body="hello\r\n"):
    message = f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\n{body}"
    with smtplib.SMTP(host, port, timeout=10) as s:
        refused = s.sendmail(sender, [recipient], message.encode())
    if refused:
        raise Failed(f"{host}:{port} refused {refused}")


def mailbox(host, port, user, password):
    """Every message in the mailbox, as bytes."""
    p = poplib.POP3(host, port, timeout=5)
    try:
        p.user(user)
        p.pass_(password)
        count = p.stat()[0]
        return [b"\r\n".join(p.retr(i)[1]) for i in range(1, count + 1)]
    finally:
        p.quit()


def rcpt_replies(host, port, sender, recipient):
    """MAIL FROM then RCPT TO without AUTH: the RCPT reply (code, text)."""
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.ehlo("client.test")
        code, text = s.mail(sender)
        if code != 250:
            raise Failed(f"MAIL FROM:<{sender}> at {host}:{port}: {code} {text!r}")
        reply = s.rcpt(recipient)
        s.rset()
        return reply


def can_connect(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def subject_of(raw):
    return email.message_from_bytes(raw, policy=email.policy.default).get("Subject", "")


def is_dsn(raw):
    return email.message_from_bytes(raw, policy=email.policy.default).get_content_type() == "multipart/report"


# --- The lab --------------------------------------------------------------


class Lab:
    def __init__(self, binary):
        self.binary = binary
        suffix = secrets.token_hex(4)
        self.suffix = suffix
        self.ns = {role: f"mnhub-{role}-{suffix}" for role in ("switch", "hub", "alice", "bob", "client")}
        self.made = []
        self.procs = {}
        self.dir = tempfile.mkdtemp(prefix="mailnet-hub-netns-")
        self.key = os.path.join(self.dir, "class.key")

    # Namespaces and links.

    def ip(self, *args):
        out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise Failed(f"ip {' '.join(args)}: {out.stderr.strip()}")

    def build(self):
        for role, ns in self.ns.items():
            self.ip("netns", "add", ns)
            self.made.append(ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
        sw = self.ns["switch"]
        self.ip("-n", sw, "link", "add", "br0", "type", "bridge")
        self.ip("-n", sw, "link", "set", "br0", "up")
        for role, addr in ADDRESSES.items():
            # Both ends are made inside the switch, the peer moved at once
            # into the machine's namespace: nothing appears on the host.
            self.ip("-n", sw, "link", "add", f"v-{role}", "type", "veth", "peer", "name", "eth0", "netns", self.ns[role])
            self.ip("-n", sw, "link", "set", f"v-{role}", "master", "br0", "up")
            self.ip("-n", self.ns[role], "addr", "add", f"{addr}/24", "dev", "eth0")
            self.ip("-n", self.ns[role], "link", "set", "eth0", "up")

    # Processes.

    def env(self, role):
        env = dict(os.environ)
        env["MAILNET_CA_DIR"] = os.path.join(self.dir, f"ca-{role}")
        env.pop("RUST_LOG", None)
        return env

    def start(self, name, role, *args):
        out = open(os.path.join(self.dir, f"{name}.out"), "wb")
        err = open(os.path.join(self.dir, f"{name}.err"), "wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[role], self.binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env=self.env(role),
        )
        out.close()
        err.close()
        self.procs[name] = proc
        return proc

    def output(self, name, stream="out"):
        try:
            with open(os.path.join(self.dir, f"{name}.{stream}"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self, name):
        proc = self.procs[name]
        if proc.poll() is not None:
            raise Failed(f"{name} exited with {proc.returncode}")
        return True

    def run(self, role, *cmd, stdin=None, timeout=30):
        """A command inside `role`'s namespace, to completion."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns[role], *cmd],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(role),
        )

    def dig(self, *args, role="client"):
        return self.run(role, "dig", f"@{HUB}", "+time=1", "+tries=1", *args, timeout=10)

    def short(self, *args):
        out = self.dig("+short", *args)
        if out.returncode != 0:
            raise Failed(f"dig {' '.join(args)}: exit {out.returncode}: {out.stdout}{out.stderr}")
        return out.stdout.strip()

    def tails(self):
        lines = []
        for name in self.procs:
            for stream in ("out", "err"):
                text = self.output(name, stream).splitlines()[-25:]
                lines.append(f"--- {name}.{stream} (last {len(text)} lines)")
                lines.extend(text)
        return "\n".join(lines)

    def cleanup(self):
        """Every process started here, then every namespace; each step is
        tried even when an earlier one failed."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 5
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired) as e:
                    print(f"warning: cannot stop {name} (pid {proc.pid}): {e!r}", file=sys.stderr)
        for ns in reversed(self.made):
            try:
                out = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=10)
                if out.returncode != 0:
                    print(f"warning: ip netns del {ns}: {out.stderr.strip()}", file=sys.stderr)
            except (OSError, subprocess.TimeoutExpired) as e:
                print(f"warning: ip netns del {ns}: {e!r}", file=sys.stderr)
        self.made.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # The networks.

    def net_file(self, name, ip, domain, smtp, pop3, user, password):
        path = os.path.join(self.dir, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(NET_FILE.format(ip=ip, domain=domain, smtp=smtp, pop3=pop3, user=user, password=password))
        return path

    def join(self, name, yaml):
        return self.start(
            name, name, "up", yaml, "--join", f"{HUB}:53", "--key", self.key, "--data-dir", os.path.join(self.dir, f"{name}-data")
        )

    def wait_ready(self, name, seconds=15):
        def ready():
            self.alive(name)
            return any(line.startswith("ready") for line in self.output(name).splitlines())

        wait_for(f"{name} ready", seconds, ready)


def checks(lab):
    tag = lab.suffix
    alice_yaml = lab.net_file("alice", ALICE, "alice.test", 2525, 2110, "a1@alice.test", "pw1")
    bob_yaml = lab.net_file("bob", BOB, "bob.test", 3525, 3110, "b1@bob.test", "pw1")
    dave_yaml = lab.net_file("dave", CLIENT, "dave.test", 4525, 4110, "d1@dave.test", "pw1")

    def a1_mail():
        return in_ns(lab.ns["alice"], mailbox, ALICE, 2110, "a1@alice.test", "pw1")

    def b1_mail():
        return in_ns(lab.ns["bob"], mailbox, BOB, 3110, "b1@bob.test", "pw1")

    def with_subject(messages, subject):
        return [m for m in messages if subject_of(m) == subject]

    lab.build()
    print(f"namespaces: {', '.join(lab.ns.values())}", flush=True)

    # The hub, then both students' networks.
    lab.start("hub", "hub", "hub", "--listen", f"{HUB}:53", "--key", lab.key)
    wait_for("hub key file", 10, lambda: lab.alive("hub") and os.path.exists(lab.key) and os.path.getsize(lab.key) > 0)
    wait_for("hub answers dig", 10, lambda: lab.alive("hub") and lab.dig("hub.test", "SOA").returncode == 0)
    check("hub", "hub answers on 192.0.2.1:53 with a key file created")
    lab.join("alice", alice_yaml)
    lab.join("bob", bob_yaml)
    lab.wait_ready("alice")
    lab.wait_ready("bob")
    for name, domain in (("alice", "alice.test"), ("bob", "bob.test")):
        out = lab.output(name)
        check(f"joined hub {HUB}:53: {domain}" in out, f"{name} joined the hub", out)

    # a. The hub publishes bob.test.
    mx = lab.short("bob.test", "MX")
    check(mx.split()[-1:] == ["mx.bob.test."], "a: bob.test MX is mx.bob.test at the hub", repr(mx))
    a = lab.short("mx.bob.test", "A")
    check(a == BOB, f"a: mx.bob.test A is {BOB}", repr(a))
    srv = lab.short("_submission._tcp.bob.test", "SRV")
    check(len(srv.split()) == 4 and srv.split()[2] == "3525", "a: _submission._tcp.bob.test SRV has port 3525", repr(srv))

    # b. Relay both ways, each machine submitting to its own server.
    ab, ba = f"alice to bob {tag}", f"bob to alice {tag}"
    in_ns(lab.ns["alice"], submit, ALICE, 2525, "a1@alice.test", "b1@bob.test", ab)
    wait_for("a1 -> b1 arrives at bob", 10, lambda: with_subject(b1_mail(), ab))
    check(True, "b: a1@alice.test -> b1@bob.test relayed from 192.0.2.2 to 192.0.2.3 and read with poplib")
    in_ns(lab.ns["bob"], submit, BOB, 3525, "b1@bob.test", "a1@alice.test", ba)
    wait_for("b1 -> a1 arrives at alice", 10, lambda: with_subject(a1_mail(), ba))
    check(True, "b: b1@bob.test -> a1@alice.test relayed from 192.0.2.3 to 192.0.2.2 and read with poplib")

    # c. A bounce across machines.
    nobody = f"to nobody {tag}"
    in_ns(lab.ns["bob"], submit, BOB, 3525, "b1@bob.test", "nobody@alice.test", nobody)

    def bounce():
        for m in b1_mail():
            text = m.decode("utf-8", "replace")
            if is_dsn(m) and "nobody@alice.test" in text and nobody in text:
                return text
        return None

    dsn = wait_for("a DSN for nobody@alice.test in b1's mailbox", 10, bounce)
    check(
        re.search(r"Diagnostic-Code:\s*smtp;\s*550\b", dsn) is not None and "mx.alice.test" in dsn,
        "c: b1 got a multipart/report DSN for nobody@alice.test with alice's 550",
        dsn,
    )

    # d. Not an open relay across the LAN, but a peer may deliver locally.
    code, text = in_ns(lab.ns["client"], rcpt_replies, BOB, 3525, "b1@bob.test", "x@alice.test")
    check(code == 554, "d: 192.0.2.4 without AUTH: RCPT TO:<x@alice.test> at bob gets 554", f"{code} {text!r}")
    code, text = in_ns(lab.ns["client"], rcpt_replies, BOB, 3525, "b1@bob.test", "b1@bob.test")
    check(code == 250, "d: 192.0.2.4 without AUTH: RCPT TO:<b1@bob.test> (local) at bob gets 250", f"{code} {text!r}")

    # e. Alice's cable out for 2 s while bob has mail for her.
    lab.ip("-n", lab.ns["switch"], "link", "set", "v-alice", "down")
    wait_for("bob losing alice", 5, lambda: not in_ns(lab.ns["bob"], can_connect, ALICE, 2525))
    check(True, "e: v-alice down: bob cannot reach 192.0.2.2:2525")
    queued = [f"while down {i} {tag}" for i in range(3)]
    for subject in queued:
        in_ns(lab.ns["bob"], submit, BOB, 3525, "b1@bob.test", "a1@alice.test", subject)
    time.sleep(2)  # the deliberate outage, not a wait for a condition
    lab.ip("-n", lab.ns["switch"], "link", "set", "v-alice", "up")
    up_at = time.monotonic()
    wait_for("the 3 queued messages at alice", 20, lambda: all(with_subject(a1_mail(), s) for s in queued))
    took = time.monotonic() - up_at
    inbox = a1_mail()
    counts = [len(with_subject(inbox, s)) for s in queued]
    check(counts == [1, 1, 1], f"e: link up again: all 3 arrived exactly once ({took:.1f} s after)", str(counts))
    bounced = [m for m in b1_mail() if any(s in m.decode("utf-8", "replace") for s in queued)]
    check(not bounced, "e: none of them bounced to b1", b"\n\n".join(bounced).decode("utf-8", "replace"))

    # f. nsupdate: unsigned is refused, signed with the class key is taken.
    update = f"server {HUB} 53\nzone carol.test\nupdate add carol.test 60 IN MX 10 mx.carol.test.\nsend\n"
    out = lab.run("client", "nsupdate", stdin=update, timeout=20)
    check(out.returncode != 0 and "REFUSED" in out.stdout + out.stderr, "f: nsupdate without a key is REFUSED", f"exit {out.returncode}: {out.stdout}{out.stderr}")
    check(lab.short("carol.test", "MX") == "", "f: carol.test MX stays absent")
    out = lab.run("client", "nsupdate", "-k", lab.key, stdin=update, timeout=20)
    check(out.returncode == 0, "f: nsupdate -k class.key succeeds", f"exit {out.returncode}: {out.stdout}{out.stderr}")
    mx = lab.short("carol.test", "MX")
    check(mx == "10 mx.carol.test.", "f: dig then shows carol.test MX 10 mx.carol.test.", repr(mx))

    # g. mailnet send / fetch from a machine with no network of its own.
    # `--tls off`: each machine has its own CA (MAILNET_CA_DIR), as separate
    # machines do, and the client trusts only its own, so STARTTLS/STLS to
    # alice's or bob's servers cannot be verified from here (the default
    # `--tls auto` fails with "invalid peer certificate").
    sent = f"sent from the client {tag}"
    out = lab.run("client", lab.binary, "send", "--from", "b1@bob.test", "--to", "a1@alice.test", "--subject", "unverified", "--body", "B", "--dns", f"{HUB}:53")
    check(
        out.returncode == 1 and "not from this machine's network CA" in out.stderr and "--tls off" in out.stderr and len(out.stderr.strip().splitlines()) == 1,
        "g: with another machine's certificate, send says why in one line and how to go on",
        f"exit {out.returncode}: {out.stdout}{out.stderr}",
    )
    out = lab.run("client", lab.binary, "send", "--from", "b1@bob.test", "--to", "a1@alice.test", "--subject", sent, "--body", "B", "--dns", f"{HUB}:53", "--tls", "off")
    check(out.returncode == 0, "g: mailnet send --dns 192.0.2.1:53 from 192.0.2.4 exits 0", f"exit {out.returncode}: {out.stdout}{out.stderr}")
    wait_for("the client's message at alice", 10, lambda: with_subject(a1_mail(), sent))
    check(True, "g: it arrived in a1's mailbox")
    out = lab.run("client", lab.binary, "fetch", "--user", "a1@alice.test", "--password", "pw1", "--dns", f"{HUB}:53", "--tls", "off")
    check(out.returncode == 0 and sent in out.stdout, "g: mailnet fetch --dns 192.0.2.1:53 from 192.0.2.4 lists it", f"exit {out.returncode}: {out.stdout}{out.stderr}")
    inbox = a1_mail()
    counts = [len(with_subject(inbox, s)) for s in [ba, *queued, sent]]
    check(counts == [1] * len(counts), "g: still no duplicates in a1's mailbox", str(counts))

    # h. Bob leaves: his records go, alice's stay.
    os.killpg(lab.procs["bob"].pid, signal.SIGTERM)
    stopped = time.monotonic()

    def gone():
        out = lab.dig("bob.test", "MX")
        return out.returncode == 0 and "ANSWER: 0," in out.stdout and ("status: REFUSED" in out.stdout or "status: NXDOMAIN" in out.stdout)

    wait_for("bob.test MX gone from the hub", 3, gone)
    check(True, f"h: SIGTERM to bob: bob.test MX gone from the hub after {time.monotonic() - stopped:.1f} s")
    check(lab.short("alice.test", "MX").split()[-1:] == ["mx.alice.test."], "h: alice.test MX still answers")
    code = lab.procs["bob"].wait(timeout=10)
    check(code == 0 and "records removed from hub" in lab.output("bob", "err"), "h: bob exits 0 saying its records were removed", f"exit {code}: " + lab.output("bob", "err"))

    # i. A hub nobody answers at.
    began = time.monotonic()
    dave = lab.start("dave", "client", "up", dave_yaml, "--join", f"{UNREACHABLE}:53", "--key", lab.key, "--data-dir", os.path.join(lab.dir, "dave-data"))
    try:
        dave.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise Failed(f"i: up --join {UNREACHABLE}:53 still running after 15 s")
    took = time.monotonic() - began
    err = lab.output("dave", "err").strip().splitlines()
    check(
        dave.returncode != 0 and 0 < len(err) <= 3 and any(UNREACHABLE in line for line in err),
        f"i: up --join {UNREACHABLE}:53 exits {dave.returncode} after {took:.1f} s with {len(err)} stderr line(s) naming the hub",
        "\n".join(err),
    )
    print(f"i: {err[0] if err else ''}")
    print("hub netns: all checks passed", flush=True)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: hub_netns.py MAILNET_BINARY")
    if os.geteuid() != 0:
        sys.exit("hub_netns.py: must run as root (network namespaces)")
    binary = os.path.abspath(sys.argv[1])

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    lab = Lab(binary)
    try:
        checks(lab)
    except (Exception, KeyboardInterrupt) as e:
        print(f"FAILED: {e if isinstance(e, Failed) else repr(e)}", flush=True)
        print(lab.tails(), flush=True)
        sys.exit(1)
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
