"""TLS as real clients use it: openssl s_client with STARTTLS (SMTP) and
STLS (POP3) verifying against the network CA, Python's smtplib.starttls()
with AUTH, poplib.stls(), and the Received: field of a message that came
over TLS.

Usage: tls.py SMTP_PORT POP3_PORT SMTPS_PORT POP3S_PORT CA_FILE
(gmail.com's ports, on 127.0.0.1)
"""
import poplib
import shutil
import smtplib
import ssl
import subprocess
import sys

smtp_port, pop3_port, smtps_port, pop3s_port = (int(a) for a in sys.argv[1:5])
ca = sys.argv[5]
HOST = "127.0.0.1"


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


if shutil.which("openssl"):
    for proto, port, name in [("smtp", smtp_port, "smtp.gmail.com"), ("pop3", pop3_port, "pop.gmail.com")]:
        r = subprocess.run(["openssl", "s_client", "-starttls", proto, "-connect", f"{HOST}:{port}",
                            "-servername", name, "-verify_hostname", name, "-CAfile", ca,
                            "-verify_return_error", "-brief"],
                           input="", capture_output=True, text=True, timeout=20)
        out = r.stdout + r.stderr
        check(r.returncode == 0 and "Verification: OK" in out,
              f"openssl s_client -starttls {proto} verifies {name} against the CA ({out.strip().splitlines()[:3]})")
    r = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{smtps_port}", "-servername", "smtp.gmail.com",
                        "-verify_hostname", "smtp.gmail.com", "-CAfile", ca, "-verify_return_error", "-brief",
                        "-crlf"],
                       input="QUIT\n", capture_output=True, text=True, timeout=20)
    check(r.returncode == 0 and "Verification: OK" in r.stdout + r.stderr,
          "openssl s_client verifies the implicit-TLS SMTP port against the CA")
else:
    print("skipped: openssl is not installed")

context = ssl.create_default_context(cafile=ca)
with smtplib.SMTP(HOST, smtp_port, timeout=10) as s:
    s.ehlo("tls.client")
    check(s.has_extn("starttls"), "EHLO offers STARTTLS")
    code, _ = s.starttls(context=context)
    check(code == 220, "smtplib.starttls() with the CA")
    s.ehlo("tls.client")
    check(not s.has_extn("starttls"), "after TLS, STARTTLS is no longer offered")
    check(s.login("usr1@gmail.com", "password1")[0] == 235, "AUTH over TLS")
    s.sendmail("usr1@gmail.com", ["bob@gmail.com"], b"Subject: over tls\r\n\r\nsecret\r\n")

p = poplib.POP3(HOST, pop3_port, timeout=10)
check("STLS" in p.capa(), "CAPA lists STLS")
p.stls(context=context)
check("STLS" not in p.capa(), "after STLS, STLS is no longer listed")
p.user("bob@gmail.com")
p.pass_("password2")
messages = [b"\r\n".join(p.retr(i + 1)[1]) for i in range(p.stat()[0])]
p.quit()
mine = [m for m in messages if b"Subject: over tls" in m]
check(mine, "the message sent over TLS is read over STLS")
check(b"with ESMTPSA" in mine[0] and b"(using TLSv1." in mine[0], "Received: says ESMTPSA and the TLS version")
# Implicit TLS (RFC 8314): SMTP_SSL and POP3_SSL.
with smtplib.SMTP_SSL(HOST, smtps_port, context=context, timeout=10) as s:
    check(s.login("usr1@gmail.com", "password1")[0] == 235, "SMTP_SSL: AUTH on the implicit-TLS port")
    s.sendmail("usr1@gmail.com", ["bob@gmail.com"], b"Subject: over smtps\r\n\r\nsecret\r\n")
p = poplib.POP3_SSL(HOST, pop3s_port, context=context, timeout=10)
p.user("bob@gmail.com")
p.pass_("password2")
count = p.stat()[0]
p.quit()
check(count == 2, f"POP3_SSL reads both messages ({count})")
print("all tls checks passed")
