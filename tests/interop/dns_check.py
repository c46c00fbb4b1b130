"""dnspython against mailnet's fake DNS. Usage: dns_check.py DNS_PORT QQ_SMTP_PORT GMAIL_POP3_PORT"""
import sys

import dns.message
import dns.query
import dns.rcode
import dns.resolver

port, qq_smtp, gmail_pop3 = (int(a) for a in sys.argv[1:4])
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = port
r.lifetime = 3


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


mx = r.resolve("mail.sustech.edu.cn", "MX")
check([(a.preference, str(a.exchange)) for a in mx] == [(10, "mxbiz1.qq.com.")], "MX of mail.sustech.edu.cn")
srv = r.resolve("_smtp._tcp.mxbiz1.qq.com", "SRV")
check([a.port for a in srv] == [qq_smtp], "SRV _smtp._tcp.mxbiz1.qq.com carries the SMTP port")
srv = r.resolve("_pop3._tcp.gmail.com", "SRV")
check([(a.port, str(a.target)) for a in srv] == [(gmail_pop3, "pop.gmail.com.")], "SRV _pop3._tcp.gmail.com")
a = r.resolve("smtp.exmail.qq.com", "A")
check([x.address for x in a] == ["127.0.0.1"], "A of smtp.exmail.qq.com")
txt = r.resolve("mail.sustech.edu.cn", "TXT")
check(b"smtp=%d" % qq_smtp in b"".join(txt[0].strings), "TXT summary")
try:
    r.resolve("nobody.gmail.com", "A")
    check(False, "NXDOMAIN inside a zone")
except dns.resolver.NXDOMAIN:
    check(True, "NXDOMAIN inside a zone")
reply = dns.query.udp(dns.message.make_query("example.org", "A"), "127.0.0.1", port=port, timeout=3)
check(reply.rcode() == dns.rcode.REFUSED, "REFUSED outside every zone")
reply = dns.query.tcp(dns.message.make_query("gmail.com", "MX"), "127.0.0.1", port=port, timeout=3)
check(reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA, "TCP works and answers are authoritative")
print("dns checks passed")
