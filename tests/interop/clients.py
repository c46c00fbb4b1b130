"""Python's own mail clients against a running mailnet server.

Usage: clients.py SMTP_PORT POP3_PORT OTHER_SMTP_PORT   (gmail.com's ports, then exmail.qq.com's SMTP)
Exits non-zero on the first failed check.
"""
import base64
import poplib
import smtplib
import sys
from email.message import EmailMessage

smtp_port, pop3_port, qq_smtp = (int(a) for a in sys.argv[1:4])
HOST = "127.0.0.1"


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


# sendmail, as the CS305 grader does.
with smtplib.SMTP(HOST, smtp_port) as s:
    refused = s.sendmail("usr1@gmail.com", ["bob@gmail.com"], "From: usr1@gmail.com\r\nSubject: Test Subject\r\n\r\nTest Body\r\n")
    check(refused == {}, "smtplib.sendmail to a local user")

# send_message with AUTH (login picks PLAIN or LOGIN), UTF-8 and 8BITMIME.
msg = EmailMessage()
msg["From"] = "usr1@gmail.com"
msg["To"] = "bob@gmail.com"
msg["Subject"] = "Grüße"
msg.set_content("héllo wörld\n.leading dot\n")
msg.add_attachment(bytes(range(256)) * 40, maintype="application", subtype="octet-stream", filename="blob.bin")
with smtplib.SMTP(HOST, smtp_port) as s:
    s.ehlo("python.client")
    check(s.has_extn("pipelining") and s.has_extn("size") and s.has_extn("auth"), "EHLO advertises PIPELINING, SIZE, AUTH")
    code, _ = s.login("usr1@gmail.com", "password1")
    check(code == 235, "smtplib.login")
    check(s.send_message(msg) == {}, "smtplib.send_message with an attachment")

# AUTH LOGIN step by step, as in the 163.com lab.
with smtplib.SMTP(HOST, smtp_port) as s:
    s.ehlo("Sodascrew")
    code, text = s.docmd("AUTH", "LOGIN")
    check(code == 334 and base64.b64decode(text) == b"username:", "AUTH LOGIN asks for the user name")
    code, text = s.docmd(base64.b64encode(b"usr1@gmail.com").decode())
    check(code == 334 and base64.b64decode(text) == b"Password:", "then the password")
    code, _ = s.docmd(base64.b64encode(b"password1").decode())
    check(code == 235, "235 Authentication successful")

# A wrong password, an unknown sender, an unknown recipient.
with smtplib.SMTP(HOST, smtp_port) as s:
    try:
        s.login("usr1@gmail.com", "wrong")
        check(False, "a wrong password is refused")
    except smtplib.SMTPAuthenticationError as e:
        check(e.smtp_code == 535, "a wrong password is refused with 535")
with smtplib.SMTP(HOST, smtp_port) as s:
    try:
        s.sendmail("error@gmail.com", ["usr1@gmail.com"], "Subject: x\r\n\r\nx\r\n")
        check(False, "an unknown local sender is refused")
    except smtplib.SMTPSenderRefused as e:
        check(e.smtp_code == 550, "SMTPSenderRefused (550) for error@gmail.com")
with smtplib.SMTP(HOST, qq_smtp) as s:
    try:
        s.sendmail("usr1@gmail.com", ["nobody@mail.sustech.edu.cn"], "Subject: x\r\n\r\nx\r\n")
        check(False, "an unknown recipient is refused")
    except smtplib.SMTPRecipientsRefused as e:
        check(e.recipients["nobody@mail.sustech.edu.cn"][0] == 550, "SMTPRecipientsRefused (550) for an unknown user")

# poplib over what arrived.
p = poplib.POP3(HOST, pop3_port)
check(p.getwelcome().startswith(b"+OK"), "POP3 greeting")
p.user("bob@gmail.com")
p.pass_("password2")
count, size = p.stat()
check(count == 2, f"STAT shows 2 messages ({count}, {size})")
resp, listing, _ = p.list()
sizes = {int(n): int(o) for n, o in (l.split() for l in listing)}
check(sum(sizes.values()) == size, "LIST sizes add up to STAT")
for n, octets in sizes.items():
    _, lines, got = p.retr(n)
    check(got == octets, f"RETR {n} returns exactly the {octets} octets LIST announced")
_, lines, _ = p.retr(1)
check(b"Subject: Test Subject" in lines, "RETR 1 is the first message")
_, uids, _ = p.uidl()
check(len(uids) == 2 and len(set(u.split()[1] for u in uids)) == 2, "UIDL gives two distinct ids")
check(p.uidl(2).split()[2] == uids[1].split()[1], "UIDL n matches the listing")
_, top, _ = p.top(2, 0)
check(top[-1] == b"" and any(l.startswith(b"Subject:") for l in top), "TOP 2 0 gives the headers")
check(p.dele(1).startswith(b"+OK"), "DELE 1")
try:
    p.retr(1)
    check(False, "a deleted message cannot be retrieved")
except poplib.error_proto:
    check(True, "a deleted message cannot be retrieved")
check(p.rset().startswith(b"+OK"), "RSET")
check(p.noop().startswith(b"+OK"), "NOOP")
check(p.stat()[0] == 2, "RSET undeleted it")
check(p.dele(2).startswith(b"+OK"), "DELE 2")
check(p.quit().startswith(b"+OK"), "QUIT")
p = poplib.POP3(HOST, pop3_port)
p.user("bob@gmail.com")
p.pass_("password2")
check(p.stat()[0] == 1, "QUIT applied the deletion")
try:
    poplib.POP3(HOST, pop3_port).apop("bob@gmail.com", "password2")
    check(False, "a locked maildrop is refused")
except poplib.error_proto as e:
    check(b"[IN-USE]" in e.args[0], "a second session gets [IN-USE]")
p.quit()
q = poplib.POP3(HOST, pop3_port)
q.apop("bob@gmail.com", "password2")
check(q.stat()[0] == 1, "APOP logs in")
caps = q.capa()
check("SASL" in caps and "PLAIN" in caps["SASL"] and "UIDL" in caps and "TOP" in caps, "CAPA lists SASL PLAIN, UIDL, TOP")
q.quit()
print("all python client checks passed")
