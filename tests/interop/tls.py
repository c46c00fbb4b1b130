"""TLS as real clients use it: openssl s_client with STARTTLS (SMTP) and
STLS (POP3) and on the implicit-TLS ports, verifying against the network CA;
Python's smtplib.starttls() with AUTH, poplib.stls(), and the Received: field
of a message that came over TLS; swaks, curl (smtp:// and pop3:// with
--ssl-reqd, pop3s://), msmtp and fetchmail.

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


def have(tool):
    """Whether `tool` is installed; with MAILNET_REQUIRE_INTEROP set (CI), its absence fails."""
    import os
    if shutil.which(tool):
        return True
    if os.environ.get("MAILNET_REQUIRE_INTEROP"):
        raise SystemExit(f"FAILED: {tool} is required (MAILNET_REQUIRE_INTEROP) but not installed")
    print(f"skipped: {tool} is not installed")
    return False


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


if have("openssl"):
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
    # -ign_eof: read on to the server's close, so the greeting and QUIT's
    # answer are both seen (the timeout is the deadline).
    r = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{pop3s_port}", "-servername", "pop.gmail.com",
                        "-verify_hostname", "pop.gmail.com", "-CAfile", ca, "-verify_return_error", "-brief",
                        "-crlf", "-ign_eof"],
                       input="QUIT\n", capture_output=True, text=True, timeout=20)
    out = r.stdout + r.stderr
    check(r.returncode == 0 and "Verification: OK" in out and r.stdout.count("+OK") >= 2,
          f"openssl s_client verifies the implicit-TLS POP3 port against the CA and gets +OK to QUIT "
          f"({out.strip().splitlines()[-3:]})")

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
# swaks, curl, msmtp and fetchmail, each verifying against the CA.
if have("swaks"):
    r = subprocess.run(["swaks", "--server", f"{HOST}:{smtp_port}", "--tls", "--tls-verify", "--tls-ca-path", ca,
                        "--tls-sni", "smtp.gmail.com", "--auth", "PLAIN", "--auth-user", "usr1@gmail.com",
                        "--auth-password", "password1", "--from", "usr1@gmail.com", "--to", "hcy@gmail.com",
                        "--header", "Subject: swaks tls"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"swaks --tls --tls-verify with AUTH PLAIN (exit {r.returncode})")
if have("curl"):
    # STARTTLS (smtp:// with --ssl-reqd: TLS or nothing) with AUTH, to a
    # mailbox nothing else here writes to; then STLS (pop3:// with
    # --ssl-reqd) reads it back as message 1. Both verify against the CA.
    r = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", ca, "--max-time", "20",
                        "--resolve", f"smtp.gmail.com:{smtp_port}:{HOST}",
                        "--user", "usr1@gmail.com:password1", "--mail-from", "usr1@gmail.com",
                        "--mail-rcpt", "usr1@gmail.com", "--upload-file", "-",
                        f"smtp://smtp.gmail.com:{smtp_port}/tls.client"],
                       input="From: usr1@gmail.com\r\nTo: usr1@gmail.com\r\nSubject: curl starttls\r\n\r\n"
                             "sent by curl over STARTTLS\r\n",
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"curl --ssl-reqd smtp:// sends with AUTH over verified STARTTLS "
                             f"(exit {r.returncode}: {r.stderr.strip()[:200]})")
    r = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", ca, "--max-time", "20",
                        "--resolve", f"pop.gmail.com:{pop3_port}:{HOST}",
                        f"pop3://usr1%40gmail.com:password1@pop.gmail.com:{pop3_port}/1"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "Subject: curl starttls" in r.stdout
          and "sent by curl over STARTTLS" in r.stdout and "ESMTPSA" in r.stdout,
          f"curl --ssl-reqd pop3://…/1 reads it over verified STLS, received with ESMTPSA "
          f"(exit {r.returncode}: {r.stderr.strip()[:200]})")
    r = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", ca, "--max-time", "20",
                        "--resolve", f"pop.gmail.com:{pop3s_port}:{HOST}",
                        f"pop3s://bob%40gmail.com:password2@pop.gmail.com:{pop3s_port}/"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.strip(), f"curl pop3s:// lists over verified TLS (exit {r.returncode})")
if have("msmtp"):
    import tempfile
    conf = tempfile.NamedTemporaryFile("w", suffix=".msmtprc", delete=False)
    conf.write(f"account default\nhost {HOST}\nport {smtp_port}\nfrom usr1@gmail.com\ntls on\n"
               f"tls_starttls on\ntls_trust_file {ca}\ntls_host_override smtp.gmail.com\nauth on\n"
               "user usr1@gmail.com\npassword password1\n")
    conf.close()
    os_chmod = __import__("os").chmod
    os_chmod(conf.name, 0o600)
    r = subprocess.run(["msmtp", "-C", conf.name, "akc@gmail.com"], input="Subject: msmtp tls\n\nhi\n",
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"msmtp with tls on and auth on (exit {r.returncode}: {r.stderr.strip()[:200]})")
if have("fetchmail"):
    import os
    import tempfile
    work = tempfile.mkdtemp()
    rc, mbox = os.path.join(work, "fetchmailrc"), os.path.join(work, "mbox")
    with open(rc, "w") as f:
        f.write(f'set no syslog\npoll {HOST} port {pop3_port} protocol pop3 user "bob@gmail.com" there with '
                f'password "password2" is "root" here options sslproto "TLS1.2+" sslcertck sslcertfile "{ca}" '
                f'sslcommonname "pop.gmail.com" keep fetchall mda "cat >> {mbox}"\n')
    os.chmod(rc, 0o600)
    r = subprocess.run(["fetchmail", "-f", rc, "--nodetach"], capture_output=True, text=True, timeout=60)
    got = open(mbox).read() if os.path.exists(mbox) else ""
    check(r.returncode == 0 and "Subject: over tls" in got,
          f"fetchmail over STLS with sslcertck against the CA (exit {r.returncode}: {r.stderr.strip()[-200:]})")
print("all tls checks passed")
