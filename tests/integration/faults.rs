//! Scripted faults on a network booted in-process: link faults seen only by
//! the relay they name, stopping and starting a server, DNS faults as a
//! resolver sees them, the runtime API, and `check`/`up` on the command line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailnet::capture::Recorder;
use mailnet::fault::Fault;
use mailnet::orchestrator::{RunningNetwork, UpOptions};
use mailnet::resolve::{MailResolver, ResolveError};
use mailnet::service::Service;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{boot, send_mail, Raw};

const DEADLINE: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_mailnet");

/// A fault as a network file writes it, checked against the built-in network.
fn fault(yaml: &str) -> Fault {
    let names: Vec<String> = mailnet::network::Network::default_network()
        .servers
        .iter()
        .map(|s| s.name.clone())
        .collect();
    mailnet::network::faults::FaultSpec::from_yaml(yaml)
        .unwrap()
        .check(Some(&names), serde_saphyr::Location::UNKNOWN)
        .unwrap()
}

/// Waits until `what` holds, or fails after the deadline.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        // A poll within the deadline: transcripts and the relay queue send
        // no notice (mailboxes do: see `Mailstore::wait_until`).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn transcript(net: &RunningNetwork, server: &str) -> String {
    let log = net.server(server).unwrap().host.log(Service::Smtp);
    log.sessions()
        .into_iter()
        .flat_map(|(_, lines)| lines.into_iter().map(|l| l.line.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

const MESSAGE: &str = "Subject: fault test\r\n\r\nhello\r\n";

#[tokio::test]
async fn a_link_fault_touches_the_relay_it_names_and_nothing_else() {
    let net = boot().await;
    net.faults.add(fault(
        "link: exmail.qq.com -> gmail.com\non: rcpt\nreply: \"451 4.7.1 Not from you\"\n",
    ));
    // A client typing to gmail.com is not the link.
    let gmail = net.server("gmail.com").unwrap().addr(Service::Smtp);
    send_mail(
        gmail,
        "usr1@mail.sustech.edu.cn",
        &["bob@gmail.com"],
        MESSAGE,
    )
    .await;
    // exmail.qq.com's relay is, and gets the injected 451 (and retries).
    let exmail = net.server("exmail.qq.com").unwrap().addr(Service::Smtp);
    send_mail(
        exmail,
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        MESSAGE,
    )
    .await;
    until("the relay's refused attempt", || {
        transcript(&net, "gmail.com").contains("[reply injected by fault #1]")
    })
    .await;
    let host = &net.server("exmail.qq.com").unwrap().host;
    assert_eq!(host.queue().entries().len(), 1, "the 451 is retried later");
    let store = net.server("gmail.com").unwrap().host.store().clone();
    assert_eq!(store.messages("bob@gmail.com").unwrap().len(), 1);
    assert_eq!(store.messages("usr1@gmail.com").unwrap().len(), 0);
    // Cleared, the next attempt goes through.
    net.faults.clear();
    net.clock.advance(Duration::from_secs(120));
    // The store wakes its waiters on every delivery: no polling here.
    assert!(
        store
            .wait_until(DEADLINE, |s| s.messages("usr1@gmail.com").unwrap().len()
                == 1)
            .await,
        "no delivery after clearing within {DEADLINE:?}"
    );
    net.stop().await;
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_until_started_on_the_same_ports() {
    let net = boot().await;
    let server = net.server("gmail.com").unwrap().clone();
    let (smtp, pop3) = (server.addr(Service::Smtp), server.addr(Service::Pop3));
    net.stop_server("gmail.com").await.unwrap();
    for addr in [smtp, pop3] {
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{addr}"
        );
    }
    // The ports stay the server's while it is down: nobody else can take
    // one (a port picked at random was lost that way before a restart).
    // The submission port saw no connection, so nothing of it lingers in
    // TIME_WAIT: it is held outright.
    let submission = server.addr(Service::Submission);
    let refused = TcpStream::connect(submission).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let taken = std::net::TcpListener::bind(submission).unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse, "{submission}");
    assert!(net.stop_server("gmail.com").await.is_err(), "stopped twice");
    // Mail for it waits at exmail.qq.com meanwhile.
    let exmail = net.server("exmail.qq.com").unwrap().addr(Service::Smtp);
    send_mail(
        exmail,
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        MESSAGE,
    )
    .await;
    let queue = net.server("exmail.qq.com").unwrap().host.queue().clone();
    net.start_server("gmail.com").await.unwrap();
    assert!(
        net.start_server("gmail.com").await.is_err(),
        "started twice"
    );
    let mut c = Raw::connect(smtp).await;
    assert!(c.reply().await.starts_with("220"));
    net.clock.flush();
    until("the queued message to leave", || queue.is_empty()).await;
    assert_eq!(
        server
            .host
            .store()
            .messages("usr1@gmail.com")
            .unwrap()
            .len(),
        1
    );
    net.stop().await;
}

#[tokio::test]
async fn dns_faults_answer_as_the_fault_says() {
    let net = boot().await;
    let resolver = MailResolver::from_dns(net.dns.unwrap());
    assert!(resolver.mx("gmail.com").await.is_ok());
    net.faults.add(fault(
        "dns: {name: gmail.com, type: MX, answer: servfail}\n",
    ));
    let first = resolver.mx("gmail.com").await.unwrap_err();
    assert!(first.is_temporary(), "SERVFAIL is temporary: {first}");
    assert!(
        resolver
            .addresses("gmail-smtp-in.l.google.com")
            .await
            .is_ok(),
        "MX only"
    );
    net.faults.clear();
    assert!(resolver.mx("gmail.com").await.is_ok());
    net.faults
        .replace(vec![fault("dns: {name: \"*.qq.com\", answer: nxdomain}\n")]);
    assert!(matches!(
        resolver.addresses("mxbiz1.qq.com").await,
        Err(ResolveError::NoSuchDomain { .. })
    ));
    assert!(resolver.mx("gmail.com").await.is_ok());
    net.faults
        .replace(vec![fault("dns: {name: gmail.com, answer: timeout}\n")]);
    let started = Instant::now();
    let silent = resolver.mx("gmail.com").await.unwrap_err();
    assert!(silent.is_temporary(), "{silent}");
    assert!(started.elapsed() < DEADLINE);
    net.stop().await;
}

/// One HTTP/1.0 exchange with a JSON body: status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut all))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&all).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn faults_change_at_runtime_through_the_api() {
    let recorder = Recorder::new();
    let options = UpOptions {
        recorder: Some(recorder.clone()),
        seed: Some(42),
        ..UpOptions::default()
    };
    let net = RunningNetwork::start(
        mailnet::network::Network::default_network().with_ephemeral_ports(),
        options,
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(mailnet::web::serve(
        listener,
        mailnet::web::WebState::of(&net, recorder),
        stop.clone(),
    ));
    let gmail = net.server("gmail.com").unwrap().addr(Service::Smtp);
    let rcpt = || async move {
        let mut c = Raw::connect(gmail).await;
        c.reply().await;
        c.cmd("HELO x").await;
        c.cmd("MAIL FROM:<a@b.example>").await;
        c.cmd("RCPT TO:<usr1@gmail.com>").await
    };

    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/faults",
        Some(
            r#"{"server": "gmail.com", "on": "rcpt", "reply": "451 4.3.0 Try later", "times": 1}"#,
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(rcpt().await, "451 4.3.0 Try later");
    assert!(rcpt().await.starts_with("250"), "times: 1");
    let (_, listed) = http(addr, "GET", "/api/v1/faults", None).await;
    assert_eq!(listed["seed"], 42);
    assert_eq!(listed["faults"][0]["matched"], 2);
    assert_eq!(listed["faults"][0]["fired"], 1);

    // A bad fault is a 400 that says why, and changes nothing.
    let (status, body) = http(
        addr,
        "PUT",
        "/api/v1/faults",
        Some(r#"[{"server": "gmail.com", "on": "rcpt", "reply": "550 no"}, {"server": "nowhere", "on": "rcpt", "action": "drop"}]"#),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("nowhere"),
        "{body}"
    );
    assert_eq!(
        http(addr, "GET", "/api/v1/faults", None).await.1["faults"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (status, body) = http(
        addr,
        "PUT",
        "/api/v1/faults",
        Some(r#"[{"server": "gmail.com", "on": "rcpt", "reply": "550 5.1.1 Gone"}]"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["faults"][0]["id"].as_u64().unwrap();
    assert_eq!(rcpt().await, "550 5.1.1 Gone");
    let (status, _) = http(addr, "DELETE", &format!("/api/v1/faults/{id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(
        http(addr, "DELETE", &format!("/api/v1/faults/{id}"), None)
            .await
            .0,
        404
    );
    assert!(rcpt().await.starts_with("250"));
    http(
        addr,
        "POST",
        "/api/v1/faults",
        Some(r#"{"server": "gmail.com", "on": "rcpt", "action": "drop"}"#),
    )
    .await;
    assert_eq!(http(addr, "DELETE", "/api/v1/faults", None).await.0, 204);
    assert!(net.faults.is_empty());
    stop.cancel();
    net.stop().await;
}

#[test]
fn check_names_the_line_of_a_bad_fault_and_up_prints_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net.yaml");
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/faults/network-with-faults.yaml"
    ))
    .unwrap();
    std::fs::write(&net, &text).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&net)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.lines().count() + 1;
    text.push_str("  - server: gmail.com\n    on: sometimes\n    action: drop\n");
    std::fs::write(&net, &text).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&net)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("net.yaml:{}:", line + 1))
            && stderr.contains("unknown step `on: sometimes`"),
        "{stderr}"
    );

    // `up --seed` prints the seed at boot.
    let data = dir.path().join("data");
    let mut up = std::process::Command::new(BIN)
        .args(["up", "--ephemeral", "--seed", "4711", "--data-dir"])
        .arg(&data)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/faults/network-with-faults.yaml"
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.starts_with("ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    let _ = up.kill();
    let _ = up.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains("faults: 2 in force; seed 4711")),
        "{seen:#?}"
    );
}
