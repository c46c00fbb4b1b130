"""After relay: LIST on the recipient's and the sender's mailboxes.
Usage: relay_check.py GMAIL_POP3_PORT QQ_POP3_PORT"""
import poplib
import sys

gmail, qq = int(sys.argv[1]), int(sys.argv[2])
for port, user, password, want in [(gmail, "usr1@gmail.com", "password1", 1), (qq, "usr1@mail.sustech.edu.cn", "password1", 1)]:
    p = poplib.POP3("127.0.0.1", port)
    p.user(user)
    p.pass_(password)
    _, listing, _ = p.list()
    if len(listing) != want:
        raise SystemExit(f"FAILED: {user} has {len(listing)} messages, expected {want}")
    _, lines, _ = p.retr(1)
    text = b"\n".join(lines)
    if user.endswith("gmail.com") and b"Subject: Test Subject" not in text:
        raise SystemExit("FAILED: the relayed message is not the one sent")
    if user.startswith("usr1@mail") and b"error@gmail.com" not in text:
        raise SystemExit("FAILED: the bounce does not name error@gmail.com")
    p.quit()
    print(f"ok: LIST on {user} shows {want} message")
print("relay checks passed")
