"""aiosmtpd as the next server of a relay (issue 13).

Usage: aiosmtpd_peer.py COUNT
Listens on a free loopback port (printed first, as `port N`), with SMTPUTF8
and 8BITMIME offered, until COUNT messages have arrived (30 s at most). Then
prints each one's envelope as aiosmtpd saw it, as JSON lines: mail_from,
mail_options, rcpt_tos and the content in hex, exactly as received.
"""
import asyncio
import json
import sys

from aiosmtpd.smtp import SMTP

want = int(sys.argv[1])
got = []
done = asyncio.Event()


class Record:
    async def handle_DATA(self, server, session, envelope):
        got.append({
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "content": envelope.original_content.hex(),
        })
        if len(got) >= want:
            done.set()
        return "250 OK recorded"


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Record(), enable_SMTPUTF8=True, decode_data=False, hostname="peer.test"),
        "127.0.0.1", 0)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    try:
        await asyncio.wait_for(done.wait(), 30)
    except asyncio.TimeoutError:
        print(f"only {len(got)} of {want} messages arrived", flush=True)
    for message in got:
        print(json.dumps(message), flush=True)
    server.close()


asyncio.run(main())
