//! Relay against a scripted peer: what a 4xx, a 5xx to a bounce, and a
//! peer that never answers do to the queue, and that shutdown does not wait
//! for a stuck delivery.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mailnet::service::Service;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::relay::{qq_alone, qq_with_peers, DEADLINE};
use crate::support::{send_mail, Raw};

/// A peer SMTP server on `port` answering each command with what `answer`
/// says (`None`: say nothing, ever). Every line it receives goes to the
/// returned channel, and every session's end as `"<closed>"`.
pub(crate) fn peer(
    port: u16,
    answer: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> mpsc::UnboundedReceiver<String> {
    let (seen, lines) = mpsc::unbounded_channel();
    let answer = Arc::new(answer);
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, answer) = (seen.clone(), answer.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                let _ = seen.send("<connected>".into());
                let mut in_data = false;
                if let Some(greeting) = answer("<connected>") {
                    let _ = write.write_all(greeting.as_bytes()).await;
                }
                let mut line = String::new();
                while read.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let text = line.trim_end().to_string();
                    line.clear();
                    let _ = seen.send(text.clone());
                    let key = if in_data && text != "." {
                        continue;
                    } else {
                        text.as_str()
                    };
                    in_data = false;
                    let Some(reply) = answer(key) else { continue };
                    in_data = reply.starts_with("354");
                    let _ = write.write_all(reply.as_bytes()).await;
                    if reply.starts_with("421") {
                        // RFC 5321: the server closes after a 421.
                        break;
                    }
                }
                let _ = seen.send("<closed>".into());
            });
        }
    });
    lines
}

/// A peer that accepts everything, except what `refuse` picks.
pub(crate) fn answers(
    refuse: impl Fn(&str) -> Option<&'static str> + Send + Sync + 'static,
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    move |line: &str| {
        if let Some(reply) = refuse(line) {
            return Some(format!("{reply}\r\n"));
        }
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        Some(match verb.as_str() {
            "<CONNECTED>" => "220 peer.test ESMTP\r\n".into(),
            "EHLO" => "250-peer.test\r\n250 PIPELINING\r\n".into(),
            "DATA" => "354 go ahead\r\n".into(),
            "QUIT" => "221 bye\r\n".into(),
            _ => "250 ok\r\n".into(),
        })
    }
}

/// Waits for a line starting with `prefix`; returns every line up to it.
pub(crate) async fn until(
    lines: &mut mpsc::UnboundedReceiver<String>,
    prefix: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.recv().await {
            let done = line.starts_with(prefix);
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "the peer never saw {prefix:?}; it saw {seen:?}"
    );
    seen
}

#[tokio::test]
async fn a_4xx_is_retried_not_bounced() {
    let (qq, gmail_port, _data) = qq_alone(|p| p.retry_initial = Duration::from_secs(30)).await;
    let busy = Arc::new(Mutex::new(true));
    let still_busy = busy.clone();
    let mut lines = peer(
        gmail_port,
        answers(move |line| {
            (line.starts_with("RCPT") && *still_busy.lock().unwrap())
                .then_some("451 4.3.0 try again later")
        }),
    );
    let server = qq.server("exmail.qq.com").unwrap().clone();
    let mut changes = server.host.queue().subscribe();
    send_mail(
        server.addr(Service::Smtp),
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        "Subject: later\r\n\r\nbody\r\n",
    )
    .await;
    until(&mut lines, "<closed>").await;
    // The attempt's result is written to the queue after the session ends.
    let entries = tokio::time::timeout(DEADLINE, async {
        loop {
            changes.changed().await.unwrap();
            let entries = server.host.queue().entries();
            if entries.iter().all(|e| e.recipients == ["usr1@gmail.com"])
                && changes.borrow().to_owned() >= 2
            {
                return entries;
            }
        }
    })
    .await
    .expect("the relay recorded its attempt");
    assert_eq!(
        entries.len(),
        1,
        "still queued, nothing else queued: {entries:?}"
    );
    assert_eq!(
        server.host.store().count("usr1@mail.sustech.edu.cn"),
        0,
        "no bounce for a 4xx"
    );

    *busy.lock().unwrap() = false;
    qq.clock.advance(Duration::from_secs(31));
    let session = until(&mut lines, ".").await;
    assert!(
        session.iter().any(|l| l == "body"),
        "the retry carried the message: {session:?}"
    );
    assert!(server.host.queue().wait_until_empty(DEADLINE).await);
    assert_eq!(server.host.store().count("usr1@mail.sustech.edu.cn"), 0);
    qq.stop().await;
}

#[tokio::test]
async fn a_bounce_that_fails_is_dropped_not_bounced() {
    let (qq, gmail_port, _data) = qq_alone(|_| {}).await;
    let mut lines = peer(
        gmail_port,
        answers(|line| line.starts_with("RCPT").then_some("550 5.1.1 no such user")),
    );
    let server = qq.server("exmail.qq.com").unwrap().clone();
    // A bounce to relay: the null sender, from an authenticated session.
    let mut raw = Raw::connect(server.addr(Service::Smtp)).await;
    let token = B64.encode("\0usr1@mail.sustech.edu.cn\0password1");
    for (line, code) in [
        ("EHLO test".to_string(), "250"),
        (format!("AUTH PLAIN {token}"), "235"),
        ("MAIL FROM:<>".into(), "250"),
        ("RCPT TO:<usr1@gmail.com>".into(), "250"),
        ("DATA".into(), "354"),
        ("Subject: Undelivered Mail\r\n\r\nreport\r\n.".into(), "250"),
    ] {
        if line == "EHLO test" {
            assert!(raw.reply().await.starts_with("220"));
        }
        let reply = raw.cmd(&line).await;
        assert!(reply.starts_with(code), "{line} -> {reply}");
    }
    until(&mut lines, "<closed>").await;
    assert!(
        server.host.queue().wait_until_empty(DEADLINE).await,
        "the failed bounce left the queue"
    );
    assert!(
        server.host.queue().entries().is_empty(),
        "and no bounce of it was queued"
    );
    assert_eq!(server.host.store().count("usr1@mail.sustech.edu.cn"), 0);
    qq.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_silent_peer() {
    let (qq, gmail_port, data) = qq_alone(|_| {}).await;
    let mut lines = peer(gmail_port, |_| None);
    let server = qq.server("exmail.qq.com").unwrap().clone();
    send_mail(
        server.addr(Service::Smtp),
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        "Subject: stuck\r\n\r\nx\r\n",
    )
    .await;
    until(&mut lines, "<connected>").await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), qq.stop())
        .await
        .expect("the network stopped within 2 s while a delivery hung");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The message was not handed over, so it is still queued for next time.
    let queued = std::fs::read_dir(data.path().join("exmail.qq.com/queue"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "qmsg")
        })
        .count();
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn unreadable_queue_entries_are_set_aside_never_sent() {
    let data = tempfile::tempdir().unwrap();
    let queue = data.path().join("exmail.qq.com/queue");
    std::fs::create_dir_all(&queue).unwrap();
    // A directory where an entry should be (unreadable even by root), and
    // an entry whose envelope is cut short: neither may go out empty.
    std::fs::create_dir(queue.join("1.0.0.qmsg")).unwrap();
    std::fs::write(
        queue.join("2.0.0.qmsg"),
        "from usr1@mail.sustech.edu.cn\nto usr1@gmail.com\n",
    )
    .unwrap();
    let mut net = mailnet::network::Network::default_network().with_ephemeral_ports();
    net.servers
        .retain(|s| s.name == "exmail.qq.com" || s.name == "gmail.com");
    let options = mailnet::orchestrator::UpOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };
    let running = mailnet::orchestrator::RunningNetwork::start(net, options)
        .await
        .unwrap();
    let qq = running.server("exmail.qq.com").unwrap();
    assert!(qq.host.queue().entries().is_empty());
    for kept in ["1.0.0.qmsg", "2.0.0.qmsg"] {
        assert!(
            queue.join("corrupt").join(kept).exists(),
            "{kept} set aside"
        );
    }
    // The relay runs (a real message still goes through) and gmail got
    // nothing else.
    send_mail(
        qq.addr(Service::Smtp),
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        "Subject: real\r\n\r\nx\r\n",
    )
    .await;
    let gmail = running.server("gmail.com").unwrap();
    assert!(
        gmail
            .host
            .store()
            .wait_until(DEADLINE, |s| s.count("usr1@gmail.com") >= 1)
            .await
    );
    assert!(qq.host.queue().wait_until_empty(DEADLINE).await);
    assert_eq!(gmail.host.store().count("usr1@gmail.com"), 1);
    running.stop().await;
}

/// Queues `subjects` as separate messages from qq to `to`, all before the
/// relay can look (no await between), so one session carries them all.
fn queue_batch(server: &mailnet::orchestrator::RunningServer, to: &str, subjects: &[String]) {
    for subject in subjects {
        server
            .host
            .queue()
            .enqueue(
                &mailnet::id::QueueId::next(),
                "usr1@mail.sustech.edu.cn",
                &[to.to_string()],
                format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n").as_bytes(),
            )
            .unwrap();
    }
}

/// The receiver shuts down gracefully in the middle of a batch (`421` to
/// the next command): the messages it acknowledged are not sent again.
#[tokio::test]
async fn a_batch_cut_short_resends_only_what_was_not_acknowledged() {
    let (qq, gmail_port, _data) = qq_alone(|p| p.retry_initial = Duration::from_secs(30)).await;
    let accepted = Arc::new(Mutex::new(0usize));
    let shutting = Arc::new(Mutex::new(true));
    let (count, closing) = (accepted.clone(), shutting.clone());
    let mut lines = peer(
        gmail_port,
        answers(move |line| {
            if *closing.lock().unwrap() && *count.lock().unwrap() >= 3 {
                return Some("421 4.3.2 peer.test shutting down");
            }
            if line == "." {
                *count.lock().unwrap() += 1;
            }
            None
        }),
    );
    let server = qq.server("exmail.qq.com").unwrap().clone();
    let subjects: Vec<String> = (1..=6).map(|i| format!("batch-{i}")).collect();
    queue_batch(&server, "usr1@gmail.com", &subjects);
    let first = until(&mut lines, "<closed>").await;
    assert_eq!(*accepted.lock().unwrap(), 3, "{first:?}");
    // Wait until the attempt is recorded: three entries left.
    let mut changes = server.host.queue().subscribe();
    tokio::time::timeout(DEADLINE, async {
        while server.host.queue().entries().len() != 3 {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the three acknowledged messages left the queue");
    // They leave as each is accepted; the retry of the rest is set when
    // the attempt is settled.
    assert!(
        server.host.wait_until_tried(1, DEADLINE).await,
        "the retry was never set"
    );

    *shutting.lock().unwrap() = false;
    qq.clock.advance(Duration::from_secs(31));
    assert!(server.host.queue().wait_until_empty(DEADLINE).await);
    let mut seen = first;
    seen.extend(until(&mut lines, "<closed>").await);
    for subject in &subjects {
        let sent = seen
            .iter()
            .filter(|l| **l == format!("Subject: {subject}"))
            .count();
        // Messages 4 to 6 were refused with 421 before DATA the first
        // time; each message's body reached the peer exactly once.
        assert_eq!(sent, 1, "{subject} reached the peer {sent} times: {seen:?}");
    }
    assert_eq!(*accepted.lock().unwrap(), 6);
    qq.stop().await;
}

#[tokio::test]
async fn an_accepted_message_leaves_the_queue_before_the_session_ends() {
    let (qq, gmail_port, _data) = qq_alone(|p| p.retry_initial = Duration::from_secs(30)).await;
    let accepted = Arc::new(Mutex::new(0usize));
    let count = accepted.clone();
    let usual = answers(|_| None);
    // Three messages are accepted; then the peer falls silent at the
    // fourth MAIL, holding the session open.
    let _lines = peer(gmail_port, move |line| {
        if *count.lock().unwrap() >= 3 && line.to_ascii_uppercase().starts_with("MAIL") {
            return None;
        }
        if line == "." {
            *count.lock().unwrap() += 1;
        }
        usual(line)
    });
    let server = qq.server("exmail.qq.com").unwrap().clone();
    let subjects: Vec<String> = (1..=6).map(|i| format!("held-{i}")).collect();
    queue_batch(&server, "usr1@gmail.com", &subjects);
    let mut changes = server.host.queue().subscribe();
    tokio::time::timeout(DEADLINE, async {
        while server.host.queue().entries().len() != 3 {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the three accepted messages left the queue while the session hangs");
    assert_eq!(*accepted.lock().unwrap(), 3);
    // Stopped mid-session (as SIGTERM does), only the unacknowledged stay.
    qq.stop().await;
    assert_eq!(server.host.queue().entries().len(), 3);
}

/// A peer that takes the message's first bytes after `354` and then stops
/// reading, forever.
fn stalling_peer(port: u16) -> mpsc::UnboundedReceiver<String> {
    let (seen, lines) = mpsc::unbounded_channel();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                let _ = write.write_all(b"220 stall.test ESMTP\r\n").await;
                let mut line = String::new();
                while read.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let verb = line.trim_end().to_ascii_uppercase();
                    line.clear();
                    let reply: &[u8] = if verb.starts_with("EHLO") {
                        b"250 stall.test\r\n"
                    } else if verb == "DATA" {
                        b"354 go ahead\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = write.write_all(reply).await;
                    if verb == "DATA" {
                        let _ = seen.send("<stalled>".to_string());
                        // Hold the connection without reading a byte more.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    lines
}

/// A peer that stops reading after `354` delays only its own domain: mail
/// for another domain still goes out at once, and the network still stops
/// within two seconds.
#[tokio::test]
async fn a_stalled_peer_delays_only_its_own_domain() {
    let (qq, ports, _data) = qq_with_peers(|_| {}, &["gmail.com", "163.com"]).await;
    let mut stalled = stalling_peer(ports[0]);
    let mut healthy = peer(ports[1], answers(|_| None));
    let server = qq.server("exmail.qq.com").unwrap().clone();
    // 8 MiB: more than the socket buffers hold, so the sender blocks.
    let big = format!(
        "Subject: big\r\n\r\n{}",
        format!("{}\r\n", "z".repeat(998)).repeat(8 * 1024)
    );
    server
        .host
        .queue()
        .enqueue(
            &mailnet::id::QueueId::next(),
            "usr1@mail.sustech.edu.cn",
            &["usr1@gmail.com".to_string()],
            big.as_bytes(),
        )
        .unwrap();
    tokio::time::timeout(DEADLINE, stalled.recv())
        .await
        .expect("the stalling peer got DATA");
    let sent = Instant::now();
    queue_batch(&server, "jy_59815@163.com", &["healthy".to_string()]);
    until(&mut healthy, ".").await;
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "mail for a healthy domain took {:?}",
        sent.elapsed()
    );
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), qq.stop())
        .await
        .expect("stopped within 2 s with a delivery stalled");
    assert!(stopping.elapsed() < Duration::from_secs(2));
}

/// Submits a UTF-8 message with `BODY=8BITMIME SMTPUTF8` to `to` through qq.
pub(crate) async fn submit_utf8(server: &mailnet::orchestrator::RunningServer, to: &str) {
    let mut c = Raw::connect(server.addr(Service::Smtp)).await;
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    let mail = c
        .cmd("MAIL FROM:<usr1@mail.sustech.edu.cn> BODY=8BITMIME SMTPUTF8")
        .await;
    assert!(mail.starts_with("250"), "{mail}");
    let rcpt = c.cmd(&format!("RCPT TO:<{to}>")).await;
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(
        "Subject: Καλημέρα\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nünïcödé 中文\r\n"
            .as_bytes(),
    )
    .await;
    assert!(c.cmd(".").await.starts_with("250"));
}

/// A peer offering `extensions` in its EHLO answer, accepting everything.
pub(crate) fn offering(
    extensions: &'static str,
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let plain = answers(|_| None);
    move |line: &str| {
        if line.to_ascii_uppercase().starts_with("EHLO") {
            Some(format!("250-peer.test\r\n{extensions}250 PIPELINING\r\n"))
        } else {
            plain(line)
        }
    }
}

/// SMTPUTF8 and BODY=8BITMIME are declared to a next server that offers
/// them, with the UTF-8 recipient and the 8-bit message intact.
#[tokio::test]
async fn relay_passes_smtputf8_and_8bitmime_on() {
    let (qq, gmail_port, _data) = qq_alone(|_| {}).await;
    let mut lines = peer(gmail_port, offering("250-8BITMIME\r\n250-SMTPUTF8\r\n"));
    let server = qq.server("exmail.qq.com").unwrap().clone();
    submit_utf8(&server, "δοκιμή@gmail.com").await;
    let seen = until(&mut lines, ".").await;
    let mail = seen.iter().find(|l| l.starts_with("MAIL FROM")).unwrap();
    assert_eq!(
        mail,
        "MAIL FROM:<usr1@mail.sustech.edu.cn> BODY=8BITMIME SMTPUTF8"
    );
    assert!(
        seen.iter().any(|l| l == "RCPT TO:<δοκιμή@gmail.com>"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l == "Subject: Καλημέρα"), "{seen:?}");
    assert!(seen.iter().any(|l| l == "ünïcödé 中文"), "{seen:?}");
    assert!(server.host.queue().wait_until_empty(DEADLINE).await);
    qq.stop().await;
}

/// To a next server without 8BITMIME or SMTPUTF8, such a message is not
/// sent mangled: it bounces, and the bounce says why.
#[tokio::test]
async fn relay_bounces_what_the_next_server_cannot_take() {
    let (qq, gmail_port, _data) = qq_alone(|_| {}).await;
    let mut lines = peer(gmail_port, offering(""));
    let server = qq.server("exmail.qq.com").unwrap().clone();
    submit_utf8(&server, "usr1@gmail.com").await;
    assert!(
        server
            .host
            .store()
            .wait_until(DEADLINE, |s| s.count("usr1@mail.sustech.edu.cn") == 1)
            .await,
        "a bounce came back"
    );
    let bounce = &server
        .host
        .store()
        .messages("usr1@mail.sustech.edu.cn")
        .unwrap()[0];
    let text = std::fs::read_to_string(&bounce.path).unwrap();
    assert!(text.contains("Status: 5.6.3"), "{text}");
    assert!(text.contains("does not offer 8BITMIME"), "{text}");
    let session = until(&mut lines, "<closed>").await;
    assert!(
        !session.iter().any(|l| l.starts_with("MAIL")),
        "nothing was sent: {session:?}"
    );
    qq.stop().await;
}
