"""The reference point for the DNS benchmark: a small authoritative server in
Python (dnslib) answering the same names. Usage: dnslib_server.py PORT"""
import sys
import time

from dnslib import RR, QTYPE, RCODE
from dnslib.server import BaseResolver, DNSLogger, DNSServer

ZONE = """
mail.sustech.edu.cn. 5 IN MX 10 mxbiz1.qq.com.
gmail.com. 5 IN MX 10 gmail-smtp-in.l.google.com.
_smtp._tcp.mxbiz1.qq.com. 5 IN SRV 0 0 1125 mxbiz1.qq.com.
_pop3._tcp.gmail.com. 5 IN SRV 0 0 2210 pop.gmail.com.
_submission._tcp.gmail.com. 5 IN SRV 0 0 2125 smtp.gmail.com.
smtp.exmail.qq.com. 5 IN A 127.0.0.1
"""


class Resolver(BaseResolver):
    def __init__(self):
        self.rrs = RR.fromZone(ZONE)

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        for rr in self.rrs:
            if rr.rname == q.qname and rr.rtype == q.qtype:
                reply.add_answer(rr)
        if not reply.rr:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


server = DNSServer(Resolver(), port=int(sys.argv[1]), address="127.0.0.1", logger=DNSLogger("-request,-reply,-truncated,-data", prefix=False))
server.start_thread()
while True:
    time.sleep(3600)
