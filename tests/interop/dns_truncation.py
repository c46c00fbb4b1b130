"""Truncated UDP answers as dnspython and kdig read them (issue 13).

Usage: dns_truncation.py DNS_PORT NAME
NAME's MX answer is larger than 512 octets. Over UDP without EDNS, and with
EDNS at 512 octets, the answer must come back with TC set, parse strictly
(no trailing byte; the OPT record kept when the query had one), and come
whole over TCP. kdig, when installed, must read the truncated reply without
calling it malformed. Exits non-zero on the first failed check.
"""
import shutil
import subprocess
import sys

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

port, name = int(sys.argv[1]), sys.argv[2]
HOST = "127.0.0.1"


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


for label, query in [
    ("no EDNS", dns.message.make_query(name, "MX", use_edns=False)),
    ("EDNS 512", dns.message.make_query(name, "MX", use_edns=0, payload=512)),
]:
    # dnspython raises TrailingJunk on a stray byte after the message.
    reply = dns.query.udp(query, HOST, port=port, timeout=5, raise_on_truncation=False)
    check(reply.flags & dns.flags.TC, f"{label}: the UDP answer has TC set")
    check(reply.id == query.id and reply.question == query.question, f"{label}: it answers the question asked")
    if query.edns >= 0:
        check(reply.edns == 0, f"{label}: the truncated answer keeps its OPT record")
    else:
        check(reply.edns < 0, f"{label}: no OPT record in answer to a query without one")
    full = dns.query.tcp(query, HOST, port=port, timeout=5)
    check(not full.flags & dns.flags.TC and len(full.answer) == 1 and len(full.answer[0]) == 1,
          f"{label}: over TCP the MX answer is whole")

if shutil.which("kdig"):
    r = subprocess.run(["kdig", f"@{HOST}", "-p", str(port), "+notcp", "+noedns", "+ignore", "+time=3", "+retry=0",
                        name, "MX"], capture_output=True, text=True)
    out = r.stdout + r.stderr
    check(r.returncode == 0 and "malformed" not in out and " tc" in out and "NOERROR" in out,
          f"kdig reads the truncated reply (exit {r.returncode}): {out.strip().splitlines()[:3]}")
else:
    print("skipped: kdig is not installed (knot-dnsutils)")

print("all truncation checks passed")
