"""A CS305-style student mail server written for mailnet's grader tests.

It is started as students' servers are, from a folder holding the course's
data/config.toml and data/fdns.toml:  course_server.py -n SERVER [--variant V]
It reads config['agent'] (its own mail domains are the agent entries whose SMTP
host, minus its first label, is its server name), config['server'][SERVER] for
its ports, config['accounts'][SERVER], and relays through FDNS['MX'] and
int(FDNS['P'][host]). Mailboxes live in memory.

Variants, each with the marks the course's grader gives it on its seven
fixtures (stated in tests/integration/grader.rs):
  correct     everything right, relays just after DATA            90/90
  no-uidl     correct, but no UIDL, TOP or CAPA                    90/90
  slow-relay  correct, but relays (and bounces) 1.5 s after DATA   90/90
  wrong       LIST numbers from 0, any sender accepted             see the test
  crash       raises at start                                       0/90
  silent      runs but never opens its ports                        0/90
"""
import argparse
import smtplib
import socketserver
import sys
import threading
import time
import tomllib

parser = argparse.ArgumentParser()
parser.add_argument("--name", "-n", required=True)
parser.add_argument("--variant", default="correct")
args = parser.parse_args()
VARIANT = args.variant

if VARIANT == "crash":
    raise RuntimeError("this server crashes at start, on purpose")
if VARIANT == "silent":
    while True:
        time.sleep(3600)

with open("data/config.toml", "rb") as f:
    CONFIG = tomllib.load(f)
with open("data/fdns.toml", "rb") as f:
    FDNS = tomllib.load(f)

NAME = args.name
DOMAINS = [d for d, hosts in CONFIG["agent"].items()
           if hosts["smtp"].split(".", 1)[1] == NAME]
PORTS = CONFIG["server"][NAME]
ACCOUNTS = CONFIG["accounts"][NAME]
MAILBOXES = {a: [] for a in ACCOUNTS}
LOCK = threading.Lock()


def is_local(address):
    return address.rsplit("@", 1)[-1] in DOMAINS


def deliver(address, message):
    with LOCK:
        MAILBOXES[address].append(message)


def bounce(sender, rcpt, why):
    if sender and sender in MAILBOXES:
        deliver(sender, (f"From: MAILER-DAEMON@{NAME}\r\nTo: {sender}\r\n"
                         f"Subject: Undelivered Mail Returned to Sender\r\n\r\n"
                         f"Could not deliver to {rcpt}: {why}\r\n"))


def relay(sender, rcpt, message):
    if VARIANT == "slow-relay":
        time.sleep(1.5)
    domain = rcpt.rsplit("@", 1)[-1]
    try:
        mx = FDNS["MX"][domain + "."]
        port = int(FDNS["P"][mx])
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail(sender, [rcpt], message)
    except smtplib.SMTPRecipientsRefused as e:
        bounce(sender, rcpt, e.recipients[rcpt][1].decode(errors="replace"))
    except Exception as e:  # noqa: BLE001 - a server reports, never dies
        bounce(sender, rcpt, repr(e))


def lines(conn):
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.rstrip(b"\r").decode(errors="replace")


def path_of(arg):
    return arg.split("<", 1)[-1].split(">", 1)[0].strip()


class SMTP(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        c.sendall(f"220 {NAME} ESMTP\r\n".encode())
        sender, rcpts, body, in_data = None, [], [], False
        for line in lines(c):
            if in_data:
                if line == ".":
                    in_data = False
                    message = "\r\n".join(body) + "\r\n"
                    for r in rcpts:
                        if is_local(r):
                            deliver(r, message)
                        else:
                            threading.Thread(target=relay, args=(sender, r, message)).start()
                    sender, rcpts, body = None, [], []
                    c.sendall(b"250 OK\r\n")
                else:
                    body.append(line[1:] if line.startswith(".") else line)
                continue
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                c.sendall(f"250-{NAME}\r\n250 SIZE 1000000\r\n".encode())
            elif verb == "HELO":
                c.sendall(f"250 {NAME}\r\n".encode())
            elif verb == "MAIL":
                sender = path_of(arg)
                if is_local(sender) and sender not in ACCOUNTS and VARIANT != "wrong":
                    c.sendall(b"550 no such sender here\r\n")
                    sender = None
                else:
                    c.sendall(b"250 OK\r\n")
            elif verb == "RCPT":
                rcpt = path_of(arg)
                if sender is None:
                    c.sendall(b"503 MAIL first\r\n")
                elif is_local(rcpt) and rcpt not in ACCOUNTS:
                    c.sendall(b"550 no such user here\r\n")
                else:
                    rcpts.append(rcpt)
                    c.sendall(b"250 OK\r\n")
            elif verb == "DATA":
                if not rcpts:
                    c.sendall(b"503 RCPT first\r\n")
                else:
                    in_data = True
                    c.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    sender, rcpts = None, []
                c.sendall(b"250 OK\r\n")
            elif verb == "QUIT":
                c.sendall(b"221 Bye\r\n")
                return
            else:
                c.sendall(b"502 Command not implemented\r\n")


class POP3(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        c.sendall(b"+OK POP3 ready\r\n")
        user, mailbox, deleted = None, None, set()
        first = 0 if VARIANT == "wrong" else 1
        for line in lines(c):
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "USER":
                user = arg.strip()
                c.sendall(b"+OK\r\n")
            elif verb == "PASS":
                if user in ACCOUNTS and ACCOUNTS[user] == arg:
                    with LOCK:
                        mailbox = list(MAILBOXES[user])
                    c.sendall(b"+OK logged in\r\n")
                else:
                    c.sendall(b"-ERR wrong user or password\r\n")
            elif verb == "QUIT":
                if mailbox is not None and deleted:
                    with LOCK:
                        for m in [mailbox[i] for i in deleted]:
                            MAILBOXES[user].remove(m)
                c.sendall(b"+OK bye\r\n")
                return
            elif mailbox is None:
                c.sendall(b"-ERR log in first\r\n")
            elif verb == "STAT":
                live = [m for i, m in enumerate(mailbox) if i not in deleted]
                c.sendall(f"+OK {len(live)} {sum(len(m) for m in live)}\r\n".encode())
            elif verb == "LIST":
                out = [f"{i + first} {len(m)}" for i, m in enumerate(mailbox) if i not in deleted]
                c.sendall(("+OK\r\n" + "".join(o + "\r\n" for o in out) + ".\r\n").encode())
            elif verb == "UIDL" and VARIANT != "no-uidl":
                out = [f"{i + 1} m{i + 1}" for i in range(len(mailbox)) if i not in deleted]
                c.sendall(("+OK\r\n" + "".join(o + "\r\n" for o in out) + ".\r\n").encode())
            elif verb in ("RETR", "TOP", "DELE") and not (verb == "TOP" and VARIANT == "no-uidl"):
                try:
                    i = int(arg.split()[0]) - 1
                    assert 0 <= i < len(mailbox) and i not in deleted
                except (ValueError, IndexError, AssertionError):
                    c.sendall(b"-ERR no such message\r\n")
                    continue
                if verb == "DELE":
                    deleted.add(i)
                    c.sendall(b"+OK deleted\r\n")
                    continue
                text = mailbox[i]
                if verb == "TOP":
                    head, _, rest = text.partition("\r\n\r\n")
                    n = int(arg.split()[1]) if len(arg.split()) > 1 else 0
                    text = head + "\r\n\r\n" + "".join(l + "\r\n" for l in rest.split("\r\n")[:n])
                stuffed = "".join(("." + l if l.startswith(".") else l) + "\r\n"
                                  for l in text.rstrip("\r\n").split("\r\n"))
                c.sendall(f"+OK {len(text)} octets\r\n{stuffed}.\r\n".encode())
            elif verb == "RSET":
                deleted.clear()
                c.sendall(b"+OK\r\n")
            elif verb == "NOOP":
                c.sendall(b"+OK\r\n")
            elif verb == "CAPA" and VARIANT != "no-uidl":
                c.sendall(b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n")
            else:
                c.sendall(b"-ERR unknown command\r\n")


def student_id():
    return 12110001


if __name__ == "__main__":
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", PORTS["smtp"]), SMTP)
    pop = socketserver.ThreadingTCPServer(("127.0.0.1", PORTS["pop"]), POP3)
    threading.Thread(target=pop.serve_forever, daemon=True).start()
    print(f"{NAME}: SMTP {PORTS['smtp']}, POP3 {PORTS['pop']}, domains {DOMAINS}", flush=True)
    try:
        smtp.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
