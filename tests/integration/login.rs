//! Failed logins are answered late in both protocols (password guessing
//! costs time), successful ones at once, and shutdown cuts the wait short.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mailnet::orchestrator::UpOptions;
use mailnet::service::Service;

use crate::support::{boot_with, Raw};

const DELAY: Duration = Duration::from_millis(400);

#[tokio::test]
async fn a_failed_login_is_answered_after_the_delay() {
    let net = boot_with(|p| p.login_delay = DELAY, UpOptions::default()).await;
    let gmail = net.server("gmail.com").unwrap();

    let mut smtp = Raw::connect(gmail.addr(Service::Smtp)).await;
    assert!(smtp.reply().await.starts_with("220"));
    assert!(smtp.cmd("EHLO x").await.starts_with("250"));
    let good = B64.encode("\0usr1@gmail.com\0password1");
    let bad = B64.encode("\0usr1@gmail.com\0guess");
    let asked = Instant::now();
    let reply = smtp.cmd(&format!("AUTH PLAIN {bad}")).await;
    let waited = asked.elapsed();
    assert!(reply.starts_with("535"), "{reply}");
    assert!(
        waited >= DELAY,
        "SMTP answered a wrong password after {waited:?}"
    );
    let asked = Instant::now();
    let reply = smtp.cmd(&format!("AUTH PLAIN {good}")).await;
    assert!(reply.starts_with("235"), "{reply}");
    assert!(asked.elapsed() < DELAY, "a good password is not delayed");

    let mut pop = Raw::connect(gmail.addr(Service::Pop3)).await;
    assert!(pop.line().await.starts_with("+OK"));
    assert!(pop.pop("USER usr1@gmail.com").await.starts_with("+OK"));
    let asked = Instant::now();
    let reply = pop.pop("PASS guess").await;
    let waited = asked.elapsed();
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(
        waited >= DELAY,
        "POP3 answered a wrong password after {waited:?}"
    );

    // A session waiting out a login delay still stops at once.
    let mut guessing = Raw::connect(gmail.addr(Service::Pop3)).await;
    assert!(guessing.line().await.starts_with("+OK"));
    guessing
        .send(b"USER usr1@gmail.com\r\nPASS guess\r\n")
        .await;
    assert!(guessing.line().await.starts_with("+OK"));
    let stopping = Instant::now();
    net.stop().await;
    assert!(
        stopping.elapsed() < DELAY,
        "stop waited {:?}",
        stopping.elapsed()
    );
}
