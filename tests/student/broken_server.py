"""A deliberately broken CS305-style mail server, for testing that the grader
fails what should fail. It reads data/config.toml and data/fdns.toml like the
course's servers and serves SMTP and POP3 for `-n SERVER`, with three bugs:
it accepts any sender, never relays mail for other domains (it drops it), and
answers NOOP with -ERR.  Usage: broken_server.py -n SERVER
"""
import argparse
import socketserver
import threading
import tomllib

parser = argparse.ArgumentParser()
parser.add_argument("--name", "-n", required=True)
args = parser.parse_args()
with open("data/config.toml", "rb") as f:
    config = tomllib.load(f)
PORTS = config["server"][args.name]
ACCOUNTS = config["accounts"][args.name]
MAILBOXES = {a: [] for a in ACCOUNTS}
LOCK = threading.Lock()


def lines(conn):
    buf = b""
    while True:
        data = conn.recv(4096)
        if not data:
            return
        buf += data
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            yield line.decode(errors="replace")


class SMTP(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        c.sendall(f"220 {args.name} broken SMTP\r\n".encode())
        rcpts, data, body = [], False, []
        for line in lines(c):
            if data:
                if line == ".":
                    with LOCK:
                        for r in rcpts:
                            if r in MAILBOXES:  # bug: mail for other domains is dropped
                                MAILBOXES[r].append("\r\n".join(body) + "\r\n")
                    data, rcpts, body = False, [], []
                    c.sendall(b"250 OK\r\n")
                else:
                    body.append(line[1:] if line.startswith("..") else line)
                continue
            verb = line.split(" ")[0].upper()
            if verb in ("HELO", "EHLO", "NOOP", "RSET"):
                c.sendall(b"250 OK\r\n")
            elif verb == "MAIL":  # bug: any sender is accepted
                c.sendall(b"250 OK\r\n")
            elif verb == "RCPT":
                rcpts.append(line.split("<", 1)[1].split(">", 1)[0])
                c.sendall(b"250 OK\r\n")
            elif verb == "DATA":
                data = True
                c.sendall(b"354 go ahead\r\n")
            elif verb == "QUIT":
                c.sendall(b"221 bye\r\n")
                return
            else:
                c.sendall(b"500 what\r\n")


class POP3(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        c.sendall(b"+OK broken POP3\r\n")
        user, box, deleted = None, None, set()
        for line in lines(c):
            parts = line.split(" ")
            verb = parts[0].upper()
            if verb == "USER":
                user = parts[1]
                c.sendall(b"+OK\r\n")
            elif verb == "PASS":
                if ACCOUNTS.get(user) == " ".join(parts[1:]):
                    box = MAILBOXES[user]
                    c.sendall(b"+OK logged in\r\n")
                else:
                    c.sendall(b"-ERR [AUTH] no\r\n")
            elif box is None:
                c.sendall(b"-ERR log in first\r\n")
            elif verb == "STAT":
                live = [m for i, m in enumerate(box) if i not in deleted]
                c.sendall(f"+OK {len(live)} {sum(len(m) for m in live)}\r\n".encode())
            elif verb in ("LIST", "UIDL"):
                c.sendall(b"+OK\r\n")
                for i, m in enumerate(box):
                    if i not in deleted:
                        c.sendall(f"{i + 1} {len(m) if verb == 'LIST' else 'id' + str(i)}\r\n".encode())
                c.sendall(b".\r\n")
            elif verb in ("RETR", "TOP"):
                m = box[int(parts[1]) - 1]
                c.sendall(b"+OK\r\n" + m.encode() + b".\r\n")
            elif verb == "DELE":
                deleted.add(int(parts[1]) - 1)
                c.sendall(b"+OK deleted\r\n")
            elif verb == "RSET":
                deleted.clear()
                c.sendall(b"+OK\r\n")
            elif verb == "NOOP":
                c.sendall(b"-ERR no\r\n")  # bug
            elif verb == "QUIT":
                with LOCK:
                    for i in sorted(deleted, reverse=True):
                        del box[i]
                c.sendall(b"+OK bye\r\n")
                return
            else:
                c.sendall(b"-ERR what\r\n")


socketserver.ThreadingTCPServer.allow_reuse_address = True
smtp = socketserver.ThreadingTCPServer(("127.0.0.1", PORTS["smtp"]), SMTP)
pop = socketserver.ThreadingTCPServer(("127.0.0.1", PORTS["pop"]), POP3)
threading.Thread(target=smtp.serve_forever, daemon=True).start()
print(f"broken server {args.name}: SMTP {PORTS['smtp']}, POP3 {PORTS['pop']}", flush=True)
pop.serve_forever()
