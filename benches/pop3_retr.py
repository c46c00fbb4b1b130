"""RETR throughput as a client that reads in large blocks sees it: one
session, USER and PASS, then RETR 1..N, each read with 1 MiB recv_into
calls until the data ends with the terminator (only the tail is checked:
the client does no per-line work, unlike poplib or curl).

Usage: pop3_retr.py HOST PORT USER PASS N"""
import socket
import sys
import time

host, port, user, password, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
s = socket.create_connection((host, port))
buf = bytearray(1 << 20)
view = memoryview(buf)


def reply():
    data = b""
    while not data.endswith(b"\r\n"):
        data += s.recv(4096)
    assert data.startswith(b"+OK"), data
    return data


reply()
s.sendall(f"USER {user}\r\n".encode()); reply()
s.sendall(f"PASS {password}\r\n".encode()); reply()
total = 0
start = time.perf_counter()
for n in range(1, count + 1):
    s.sendall(f"RETR {n}\r\n".encode())
    tail = b""
    while not tail.endswith(b"\r\n.\r\n"):
        got = s.recv_into(buf)
        if got == 0:
            raise SystemExit("connection closed")
        total += got
        tail = (tail + bytes(view[max(0, got - 5):got]))[-5:]
elapsed = time.perf_counter() - start
s.sendall(b"QUIT\r\n")
print(f"RETR {count} messages, {total} octets in {elapsed:.3f} s: {total / elapsed / 1e6:.0f} MB/s")
