"""Whole POP3 sessions per second with poplib: USER, PASS, STAT, RETR 1, QUIT.
Sequential (first user), then 8 clients in parallel (client i logs in as user
i, so no two sessions contend for one maildrop lock).

Usage: pop3_sessions.py HOST PORT USER:PASS [USER:PASS ...]"""
import poplib
import sys
import threading
import time

host, port = sys.argv[1], int(sys.argv[2])
users = [u.split(":", 1) for u in sys.argv[3:]]


def session(user, password):
    p = poplib.POP3(host, port)
    p.user(user)
    p.pass_(password)
    p.stat()
    p.retr(1)
    p.quit()


def run(workers, seconds=3.0):
    counts = [0] * workers
    stop = time.monotonic() + seconds

    def worker(i):
        user, password = users[i % len(users)]
        while time.monotonic() < stop:
            session(user, password)
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


print(f"{run(1):.0f} sessions/s sequential, {run(8):.0f} sessions/s with 8 clients")
