"""Protocol conformance as clients nobody here wrote read it (issue 13).

Usage: conformance.py GMAIL_SMTP GMAIL_POP3 QQ_SMTP QQ_POP3 DNS_PORT
Every server is on 127.0.0.1. Exits non-zero on the first failed check.
Python's email parser reads a bounce; smtplib sends a 2,000-character line
and parameters nobody advertised; raw sockets try SMTP smuggling; curl logs
in to POP3 with AUTH=LOGIN and dig asks NS, AXFR and EDNS version 1 (each
when installed).
"""
import email
import email.policy
import poplib
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import time

gmail_smtp, gmail_pop, qq_smtp, qq_pop, dns_port = (int(a) for a in sys.argv[1:6])
HOST = "127.0.0.1"


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


PASSWORDS = {"bob@gmail.com": "password2"}


def messages(port, user):
    password = PASSWORDS.get(user, "password1")
    p = poplib.POP3(HOST, port, timeout=10)
    p.user(user)
    p.pass_(password)
    out = [b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n" for i in range(p.stat()[0])]
    p.quit()
    return out


def wait_for(port, user, pick, deadline=15.0):
    end = time.time() + deadline
    while True:
        found = [m for m in messages(port, user) if pick(m)]
        if found:
            return found[0]
        if time.time() > end:
            raise SystemExit(f"FAILED: nothing for {user} within {deadline} s")
        time.sleep(0.05)


def msg(subject, body="hello", to="bob@gmail.com"):
    return f"From: usr1@gmail.com\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


# A bounce, read the way a DSN consumer does.
with smtplib.SMTP(HOST, qq_smtp, timeout=10) as s:
    s.sendmail("usr1@mail.sustech.edu.cn", ["error@gmail.com"], msg("to bounce", to="error@gmail.com"))
raw = wait_for(qq_pop, "usr1@mail.sustech.edu.cn", lambda m: b"delivery-status" in m)
report = email.message_from_bytes(raw, policy=email.policy.default)
defects = [type(d).__name__ for part in report.walk() for d in part.defects]
check(not defects, f"the bounce parses without defects ({defects})")
status = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"][0]
check((status["Content-Transfer-Encoding"] or "7bit").lower() == "7bit", "the delivery-status part is 7bit")
blocks = status.get_payload()
recipient = [b for b in blocks[1:] if "error@gmail.com" in str(b["Final-Recipient"])][0]
diagnostic = str(recipient["Diagnostic-Code"])
check(re.match(r"smtp; 550 ", diagnostic) and not diagnostic.endswith("="), f"Diagnostic-Code whole: {diagnostic!r}")
check(str(recipient["Status"]) == "5.1.1" and str(recipient["Action"]) == "failed", "Status 5.1.1, Action failed")

# A 2,000-character line, stored byte for byte.
line = "".join(chr(0x41 + (i * 7) % 26) for i in range(2000))
sent = msg("long line", f"before\r\n{line}\r\nafter")
with smtplib.SMTP(HOST, gmail_smtp, timeout=10) as s:
    check(s.sendmail("usr1@gmail.com", ["bob@gmail.com"], sent) == {}, "a 2,000-character line is accepted")
got = wait_for(gmail_pop, "bob@gmail.com", lambda m: b"Subject: long line" in m)
check(got.endswith(sent), "the long line is stored byte-exact")

# SMTP smuggling: a bare line end before a dot never ends the message.
for name, sep in [("LF.LF", b"\n.\n"), ("CR.CR", b"\r.\r"), ("LF.CRLF", b"\n.\r\n")]:
    marker = f"smuggled-{name}".encode()
    c = socket.create_connection((HOST, gmail_smtp), timeout=10)
    f = c.makefile("rb")
    f.readline()
    c.sendall(b"EHLO smuggler\r\n")
    while f.readline()[3:4] == b"-":
        pass
    c.sendall(b"MAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<usr1@gmail.com>\r\nDATA\r\n")
    for _ in range(3):
        f.readline()
    c.sendall(b"hello" + sep + b"MAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<usr1@gmail.com>\r\nDATA\r\n"
              + marker + b"\r\n.\r\nQUIT\r\n")
    replies = [l.decode().strip() for l in f.readlines()]
    c.close()
    check(len([r for r in replies if r.startswith("250")]) == 1, f"{name}: one message accepted ({replies})")
stored = messages(gmail_pop, "usr1@gmail.com")
check(not any(b"smuggled" in m and b"hello" not in m for m in stored), "no smuggled message was stored alone")

# Parameters nobody advertised.
with smtplib.SMTP(HOST, gmail_smtp, timeout=10) as s:
    s.ehlo("params")
    code, text = s.docmd("MAIL FROM:<usr1@gmail.com> BODY=BINARYMIME")
    check(code == 555 and text.startswith(b"5.5.4"), f"BODY=BINARYMIME -> {code} {text!r}")
    check(s.docmd("MAIL FROM:<usr1@gmail.com>")[0] == 250, "plain MAIL")
    code, text = s.docmd("RCPT TO:<bob@gmail.com> NOTIFY=SUCCESS")
    check(code == 555 and text.startswith(b"5.5.4"), f"NOTIFY without DSN -> {code} {text!r}")

# Received: words (RFC 3848, RFC 6531).
with smtplib.SMTP(HOST, gmail_smtp, timeout=10) as s:
    s.login("usr1@gmail.com", "password1")
    s.sendmail("usr1@gmail.com", ["bob@gmail.com"], msg("after auth"))
with smtplib.SMTP(HOST, gmail_smtp, timeout=10) as s:
    s.sendmail("usr1@gmail.com", ["bob@gmail.com"], msg("utf8 session"), mail_options=["SMTPUTF8"])
for subject, word in [("after auth", "ESMTPA"), ("utf8 session", "UTF8SMTP")]:
    m = wait_for(gmail_pop, "bob@gmail.com", lambda m, s=subject: f"Subject: {s}".encode() in m)
    top = re.sub(r"\s+", " ", str(email.message_from_bytes(m)["Received"]))
    check(f" with {word} " in top, f"{subject}: {top}")

# curl: POP3 with AUTH=LOGIN.
if shutil.which("curl"):
    r = subprocess.run(["curl", "-sS", "-v", "--max-time", "10", "--login-options", "AUTH=LOGIN",
                        f"pop3://usr1%40gmail.com:password1@{HOST}:{gmail_pop}/"], capture_output=True, text=True)
    check(r.returncode == 0 and "AUTH LOGIN" in r.stderr, f"curl POP3 AUTH=LOGIN (exit {r.returncode})")
else:
    print("skipped: curl is not installed")

# dig: NS, AXFR, EDNS version 1.
if shutil.which("dig"):
    def dig(*args):
        return subprocess.run(["dig", f"@{HOST}", "-p", str(dns_port), "+time=2", "+tries=1", *args],
                              capture_output=True, text=True).stdout
    check("ns.gmail.com." in dig("NS", "gmail.com", "+short"), "dig NS gmail.com")
    check("Transfer failed" in dig("AXFR", "gmail.com"), "dig AXFR gmail.com is refused")
    check("status: BADVERS" in dig("+edns=1", "+noednsnegotiation", "gmail.com", "MX"), "dig +edns=1 gets BADVERS")
else:
    print("skipped: dig is not installed")

print("all conformance checks passed")
