//! The client against a scripted peer over an in-memory pipe: the peer's
//! replies arrive in chunks of 1, 2, 4 … bytes, and the bytes the client
//! sends are compared whole.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const REPLIES: &[u8] = b"220 mx.example ESMTP\r\n\
250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n\
250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@x>: User unknown\r\n354 Go ahead\r\n\
250 2.0.0 Ok: queued as 1\r\n221 Bye\r\n";

/// Runs `script` as the client against a peer that answers with `replies`
/// written in `chunk`-byte pieces; returns what the client sent.
async fn against_peer<F, Fut>(replies: &'static [u8], chunk: usize, script: F) -> Vec<u8>
where
    F: FnOnce(SmtpClient<tokio::io::DuplexStream>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (client_end, mut peer) = tokio::io::duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        for piece in replies.chunks(chunk) {
            peer.write_all(piece).await.unwrap();
            peer.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        let mut sent = Vec::new();
        peer.read_to_end(&mut sent).await.unwrap();
        sent
    });
    script(SmtpClient::new(client_end, Duration::from_secs(5))).await;
    writer.await.unwrap()
}

#[tokio::test]
async fn a_pipelined_transaction_in_any_chunking() {
    let mut chunk = 1;
    while chunk <= 512 {
        let sent = against_peer(REPLIES, chunk, |mut c| async move {
            let greeting = c.read_reply().await.unwrap();
            assert_eq!(greeting.code, 220);
            let caps = c.hello("me.example").await.unwrap().unwrap();
            assert!(caps.pipelining && caps.auth_plain && caps.auth_login);
            assert_eq!(caps.size, Some(1000));
            let rcpts = vec!["a@x".to_string(), "b@x".to_string()];
            let envelope = Envelope {
                mail_from: "s@me.example",
                recipients: &rcpts,
                message: b"Subject: t\r\n\r\n.hidden\r\n..two\r\nend",
                parameters: &[],
            };
            let tx = c.send_mail(envelope, true).await.unwrap();
            let outcomes = tx.outcomes(2);
            assert!(matches!(&outcomes[0], RecipientOutcome::Accepted(r) if r.code == 250));
            match &outcomes[1] {
                RecipientOutcome::Refused { stage, reply } => {
                    assert_eq!(*stage, Stage::RcptTo);
                    assert_eq!(reply.to_string(), "550 5.1.1 <b@x>: User unknown");
                    assert_eq!(reply.status_text(), "5.1.1");
                }
                other => panic!("chunk {chunk}: {other:?}"),
            }
            assert!(!tx.needs_reset());
            c.quit().await;
        })
        .await;
        assert_eq!(
            String::from_utf8_lossy(&sent),
            "EHLO me.example\r\n\
             MAIL FROM:<s@me.example>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n\
             Subject: t\r\n\r\n..hidden\r\n...two\r\nend\r\n.\r\nQUIT\r\n",
            "chunk {chunk}: the message must go dot-stuffed and terminated"
        );
        chunk *= 2;
    }
}

#[tokio::test]
async fn without_pipelining_a_refused_sender_stops_the_transaction() {
    let replies: &[u8] = b"550 5.7.1 no\r\n250 Ok\r\n";
    let sent = against_peer(replies, 3, |mut c| async move {
        let rcpts = vec!["a@x".to_string()];
        let tx = c
            .send_mail(
                Envelope {
                    mail_from: "s@y",
                    recipients: &rcpts,
                    message: b"x",
                    parameters: &[],
                },
                false,
            )
            .await
            .unwrap();
        assert!(tx.needs_reset());
        assert_eq!(
            tx.outcomes(1),
            vec![RecipientOutcome::Refused {
                stage: Stage::MailFrom,
                reply: tx.mail.clone()
            }]
        );
        assert_eq!(c.command("RSET").await.unwrap().code, 250);
    })
    .await;
    assert_eq!(sent, b"MAIL FROM:<s@y>\r\nRSET\r\n");
}

#[tokio::test]
async fn a_354_with_no_recipient_gets_an_empty_message() {
    let replies: &[u8] = b"250 Ok\r\n550 no\r\n354 go\r\n554 no valid recipients\r\n";
    let sent = against_peer(replies, 5, |mut c| async move {
        let rcpts = vec!["a@x".to_string()];
        let tx = c
            .send_mail(
                Envelope {
                    mail_from: "s@y",
                    recipients: &rcpts,
                    message: b"secret",
                    parameters: &[],
                },
                true,
            )
            .await
            .unwrap();
        assert!(matches!(
            &tx.outcomes(1)[0],
            RecipientOutcome::Refused {
                stage: Stage::RcptTo,
                ..
            }
        ));
    })
    .await;
    assert!(!String::from_utf8_lossy(&sent).contains("secret"));
    assert!(sent.ends_with(b"DATA\r\n.\r\n"));
}

#[tokio::test]
async fn credentials_never_reach_the_transcript() {
    let replies: &[u8] = b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n235 ok\r\n";
    let sent = against_peer(replies, 7, |mut c| async move {
        c.record_transcript();
        let offered = Capabilities::default();
        let login = c
            .authenticate("usr1@x", "hunter2", AuthMechanism::Login, &offered)
            .await
            .unwrap();
        assert_eq!(login.code, 235);
        let plain = c
            .authenticate("usr1@x", "hunter2", AuthMechanism::Plain, &offered)
            .await
            .unwrap();
        assert_eq!(plain.code, 235);
        let shown: Vec<String> = c.take_transcript().iter().map(|l| l.to_string()).collect();
        let shown = shown.join("\n");
        let plain_token = B64.encode("\0usr1@x\0hunter2");
        for secret in [
            "hunter2",
            &B64.encode("hunter2"),
            &B64.encode("usr1@x"),
            &plain_token,
        ] {
            assert!(!shown.contains(secret), "{secret} in transcript:\n{shown}");
        }
        assert!(shown.contains("[password]"), "{shown}");
    })
    .await;
    assert!(String::from_utf8_lossy(&sent).contains("aHVudGVyMg=="));
}

#[tokio::test]
async fn garbage_and_silence_are_errors_not_hangs() {
    let sent = against_peer(b"hello\r\n", 1, |mut c| async move {
        assert!(matches!(
            c.read_reply().await,
            Err(ClientError::Malformed(_))
        ));
    })
    .await;
    assert!(sent.is_empty());
    let (end, _peer) = tokio::io::duplex(64);
    let mut c = SmtpClient::new(end, Duration::from_millis(50));
    assert!(matches!(c.read_reply().await, Err(ClientError::Timeout(_))));
}
