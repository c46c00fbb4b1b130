"""The CS305 grader's relay cases with smtplib. Usage: relay_send.py QQ_SMTP_PORT"""
import smtplib
import sys

port = int(sys.argv[1])
with smtplib.SMTP("127.0.0.1", port) as s:
    s.sendmail("usr1@mail.sustech.edu.cn", ["usr1@gmail.com"], "From: usr1@mail.sustech.edu.cn\r\nSubject: Test Subject\r\n\r\nTest Body\r\n")
    s.sendmail("usr1@mail.sustech.edu.cn", ["error@gmail.com"], "From: usr1@mail.sustech.edu.cn\r\nSubject: Test Subject\r\n\r\nTest Body\r\n")
with smtplib.SMTP("127.0.0.1", port) as s:
    try:
        s.sendmail("error@mail.sustech.edu.cn", ["usr1@gmail.com"], "Subject: x\r\n\r\nx\r\n")
        raise SystemExit("FAILED: a non-existent sender was accepted")
    except smtplib.SMTPSenderRefused:
        print("ok: SMTPSenderRefused for error@mail.sustech.edu.cn")
print("sent")
