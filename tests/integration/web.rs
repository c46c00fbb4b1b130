//! The web API (`up --web`) over HTTP, on a network booted in-process:
//! servers, messages and their paths, events, wait, delete against POP3,
//! the queue, sessions and pcap, the dashboard's page and its headers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailnet::capture::Recorder;
use mailnet::orchestrator::{RunningNetwork, UpOptions};
use mailnet::service::Service;
use mailnet::web::WebState;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{boot_with, send_mail, Raw};

const DEADLINE: Duration = Duration::from_secs(10);

struct Web {
    net: RunningNetwork,
    addr: SocketAddr,
    stop: CancellationToken,
}

async fn start_web(net: RunningNetwork, recorder: Recorder) -> Web {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let state = WebState::of(&net, recorder);
    tokio::spawn(mailnet::web::serve(listener, state, stop.clone()));
    Web { net, addr, stop }
}

async fn web() -> Web {
    let recorder = Recorder::new();
    let options = UpOptions {
        recorder: Some(recorder.clone()),
        ..UpOptions::default()
    };
    start_web(boot_with(|_| {}, options).await, recorder).await
}

/// One HTTP/1.0 exchange: status, headers (lower-case names), body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut all))
        .await
        .expect("an answer in time")
        .unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header end");
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, all[split + 4..].to_vec())
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, _, body) = http(addr, "GET", path).await;
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn smtp(web: &Web, server: &str) -> SocketAddr {
    web.net.server(server).unwrap().addr(Service::Smtp)
}

/// Waits until the mailbox lists a message with `subject`; its id.
async fn message_id(web: &Web, mailbox: &str, subject: &str) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let list = get_json(web.addr, &format!("/api/v1/mailboxes/{mailbox}/messages")).await;
        if let Some(m) = list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["subject"] == subject)
        {
            return m["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < end, "no {subject:?} in {mailbox}: {list}");
        tokio::task::yield_now().await;
    }
}

fn enc(id: &str) -> String {
    id.replace('@', "%40")
}

#[tokio::test]
async fn servers_and_the_api_document() {
    let web = web().await;
    let servers = get_json(web.addr, "/api/v1/servers").await;
    let gmail = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "gmail.com")
        .unwrap()
        .clone();
    assert_eq!(gmail["smtp"], u64::from(smtp(&web, "gmail.com").port()));
    assert_eq!(gmail["domains"][0], "gmail.com");
    assert!(gmail["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == "usr1@gmail.com"));
    let dns = gmail["dns"].as_array().unwrap();
    assert!(
        dns.iter()
            .any(|r| r["type"] == "MX" && r["name"] == "gmail.com."),
        "{dns:?}"
    );
    assert!(dns.iter().any(|r| r["type"] == "SRV"
        && r["data"]
            .as_str()
            .unwrap()
            .contains(&smtp(&web, "gmail.com").port().to_string())));

    let doc = get_json(web.addr, "/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // Every documented GET answers (with made-up ids: 404 as JSON, never the dashboard's page).
    for (path, item) in paths {
        let concrete = path
            .replace("{address}", "usr1%40gmail.com")
            .replace("{id}", "nobody~none")
            .replace("{index}", "0");
        if item.get("get").is_none() || concrete.ends_with("/events") || concrete.ends_with("/wait")
        {
            continue;
        }
        let (status, headers, _) = http(web.addr, "GET", &concrete).await;
        assert!(status == 200 || status == 404, "{concrete}: {status}");
        assert!(
            header(&headers, "content-type").starts_with("application/json") || status == 200,
            "{concrete}"
        );
    }
    assert!(paths["/api/v1/messages/{id}"].get("delete").is_some());
    // And an undocumented API path is a JSON 404, not the page.
    let (status, headers, _) = http(web.addr, "GET", "/api/v1/nothing").await;
    assert_eq!(
        (status, header(&headers, "content-type")),
        (404, "application/json")
    );
    web.stop.cancel();
    web.net.stop().await;
}

#[tokio::test]
async fn a_relayed_message_has_events_a_path_and_its_parts() {
    let web = web().await;
    let mut events = TcpStream::connect(web.addr).await.unwrap();
    events
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut events = BufReader::new(events);
    let mut status = String::new();
    events.read_line(&mut status).await.unwrap();
    assert!(status.contains(" 200 "), "{status}");
    // Past the headers: the stream is open before anything is sent.
    loop {
        let mut line = String::new();
        events.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if line.to_ascii_lowercase().starts_with("content-type") {
            assert!(line.contains("text/event-stream"), "{line}");
        }
    }
    let message = "From: usr1@mail.sustech.edu.cn\r\nTo: usr1@gmail.com\r\nSubject: across\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe body text\r\n--b\r\nContent-Type: image/png; name=p.png\r\nContent-Disposition: attachment; filename=p.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n";
    send_mail(
        smtp(&web, "exmail.qq.com"),
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        message,
    )
    .await;
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut kind = String::new();
        loop {
            let mut line = String::new();
            events.read_line(&mut line).await.unwrap();
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.trim().to_string();
            }
            if let Some(data) = line.strip_prefix("data: ") {
                let data: Value = serde_json::from_str(data.trim()).unwrap();
                seen.push((kind.clone(), data.clone()));
                if kind == "delivered" && data["recipient"] == "usr1@gmail.com" {
                    break;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no delivered event: {seen:?}"));
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        kinds.contains(&"received")
            && kinds.contains(&"queued")
            && kinds.contains(&"session_opened"),
        "{kinds:?}"
    );
    assert_eq!(seen.last().unwrap().1["server"], "gmail.com");

    let id = message_id(&web, "usr1@gmail.com", "across").await;
    let full = get_json(web.addr, &format!("/api/v1/messages/{}", enc(&id))).await;
    assert_eq!(full["text"].as_str().unwrap().trim(), "the body text");
    assert_eq!(full["attachments"][0]["filename"], "p.png");
    // The path, once the relay has heard gmail.com's reply.
    let end = Instant::now() + DEADLINE;
    let path = loop {
        let full = get_json(web.addr, &format!("/api/v1/messages/{}", enc(&id))).await;
        let path = full["path"].as_array().unwrap().clone();
        if path.iter().any(|h| h["event"] == "relayed") {
            break path;
        }
        assert!(Instant::now() < end, "{path:?}");
        tokio::task::yield_now().await;
    };
    let hops: Vec<(String, String)> = path
        .iter()
        .map(|h| {
            (
                h["server"].as_str().unwrap().to_string(),
                h["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("exmail.qq.com", "received"),
        ("exmail.qq.com", "queued"),
        ("exmail.qq.com", "relayed"),
        ("gmail.com", "received"),
        ("gmail.com", "delivered"),
    ];
    assert_eq!(hops, want.map(|(s, e)| (s.to_string(), e.to_string())));
    assert!(
        path[2]["reply"].as_str().unwrap().starts_with("250"),
        "{path:?}"
    );

    let (status, headers, raw) = http(
        web.addr,
        "GET",
        &format!("/api/v1/messages/{}/raw", enc(&id)),
    )
    .await;
    assert_eq!(
        (status, header(&headers, "content-type")),
        (200, "message/rfc822")
    );
    assert!(raw.starts_with(b"Return-Path:") || raw.windows(9).any(|w| w == b"Received:"));
    assert!(raw.windows(13).any(|w| w == b"the body text"));
    let (status, headers, png) = http(
        web.addr,
        "GET",
        &format!("/api/v1/messages/{}/attachments/0", enc(&id)),
    )
    .await;
    assert_eq!(
        (status, header(&headers, "content-type")),
        (200, "image/png")
    );
    assert!(header(&headers, "content-disposition").contains("p.png"));
    assert_eq!(&png[..4], b"\x89PNG");

    // The relay hop used STARTTLS: its recording, and so its pcap, hold
    // the decrypted dialogue.
    let sessions = get_json(web.addr, "/api/v1/sessions").await;
    let relay_hop = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == "gmail.com" && s["protocol"] == "smtp" && s["tls"] == true)
        .unwrap_or_else(|| panic!("no TLS session at gmail.com: {sessions}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, pcap) = http(
        web.addr,
        "GET",
        &format!("/api/v1/sessions/{relay_hop}/pcap"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(pcap.windows(9).any(|w| w == b"STARTTLS\r"));
    assert!(
        pcap.windows(24).any(|w| w == b"RCPT TO:<usr1@gmail.com>"),
        "the dialogue after STARTTLS is in clear"
    );
    web.stop.cancel();
    web.net.stop().await;
}

#[tokio::test]
async fn wait_answers_when_the_mail_is_there_or_408_in_time() {
    let web = web().await;
    let addr = web.addr;
    let waiting = tokio::spawn(async move {
        http(
            addr,
            "GET",
            "/api/v1/wait?mailbox=bob@gmail.com&count=1&timeout=10",
        )
        .await
    });
    send_mail(
        smtp(&web, "gmail.com"),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: waited for\r\n\r\nx\r\n",
    )
    .await;
    let (status, _, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("waited for"));
    let started = Instant::now();
    let (status, _, body) = http(
        addr,
        "GET",
        "/api/v1/wait?mailbox=bob@gmail.com&count=5&timeout=0.5",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let (status, _, _) = http(addr, "GET", "/api/v1/wait?mailbox=x@nowhere.test&timeout=1").await;
    assert_eq!(status, 404);
    web.stop.cancel();
    web.net.stop().await;
}

#[tokio::test]
async fn delete_agrees_with_pop3_and_waits_for_its_lock() {
    let web = web().await;
    for subject in ["keep", "drop"] {
        send_mail(
            smtp(&web, "gmail.com"),
            "bob@gmail.com",
            &["usr1@gmail.com"],
            &format!("Subject: {subject}\r\n\r\nx\r\n"),
        )
        .await;
    }
    let drop_id = message_id(&web, "usr1@gmail.com", "drop").await;
    let pop3 = web.net.server("gmail.com").unwrap().addr(Service::Pop3);
    // A POP3 session holding the maildrop: the API does not delete under it.
    let mut session = Raw::connect(pop3).await;
    session.line().await;
    session.pop("USER usr1@gmail.com").await;
    assert!(session.pop("PASS password1").await.starts_with("+OK"));
    let (status, _, _) = http(
        web.addr,
        "DELETE",
        &format!("/api/v1/messages/{}", enc(&drop_id)),
    )
    .await;
    assert_eq!(status, 409);
    session.pop("QUIT").await;
    let (status, _, _) = http(
        web.addr,
        "DELETE",
        &format!("/api/v1/messages/{}", enc(&drop_id)),
    )
    .await;
    assert_eq!(status, 204);
    let mut session = Raw::connect(pop3).await;
    session.line().await;
    session.pop("USER usr1@gmail.com").await;
    session.pop("PASS password1").await;
    assert!(session.pop("STAT").await.starts_with("+OK 1 "));
    session.pop("QUIT").await;
    let list = get_json(web.addr, "/api/v1/mailboxes/usr1@gmail.com/messages").await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
    let (status, _, _) = http(
        web.addr,
        "GET",
        &format!("/api/v1/messages/{}", enc(&drop_id)),
    )
    .await;
    assert_eq!(status, 404);
    web.stop.cancel();
    web.net.stop().await;
}

#[tokio::test]
async fn the_queue_shows_attempts_and_the_next_retry() {
    let recorder = Recorder::new();
    let (net, ports, _data) = crate::relay::qq_with_peers(|_| {}, &["gmail.com"]).await;
    let _ = ports;
    let web = start_web(net, recorder).await;
    send_mail(
        smtp(&web, "exmail.qq.com"),
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        "Subject: stuck\r\n\r\nx\r\n",
    )
    .await;
    let end = Instant::now() + DEADLINE;
    let entry = loop {
        let queue = get_json(web.addr, "/api/v1/queue").await;
        let qq = queue["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["server"] == "exmail.qq.com")
            .unwrap()
            .clone();
        if let Some(entry) = qq["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["attempts"].as_u64() >= Some(1))
        {
            break entry.clone();
        }
        assert!(Instant::now() < end, "{queue}");
        tokio::task::yield_now().await;
    };
    assert_eq!(entry["recipient"], "usr1@gmail.com");
    assert!(
        entry["next_retry"].is_string() && entry["last_reply"].is_string(),
        "{entry}"
    );
    // With --only, the dashboard shows the whole network and says which servers run here.
    let servers = get_json(web.addr, "/api/v1/servers").await;
    let here: Vec<(&str, bool)> = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["running_here"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        here.contains(&("exmail.qq.com", true)) && here.contains(&("gmail.com", false)),
        "{here:?}"
    );
    web.stop.cancel();
    web.net.stop().await;
}

#[tokio::test]
async fn sessions_have_transcripts_without_passwords_and_pcap_files() {
    let web = web().await;
    send_mail(
        smtp(&web, "gmail.com"),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: s\r\n\r\nx\r\n",
    )
    .await;
    let pop3 = web.net.server("gmail.com").unwrap().addr(Service::Pop3);
    let mut session = Raw::connect(pop3).await;
    session.line().await;
    session.pop("USER bob@gmail.com").await;
    session.pop("PASS password2-is-secret").await;
    session.pop("QUIT").await;
    let end = Instant::now() + DEADLINE;
    let (smtp_id, pop_id) = loop {
        let list = get_json(web.addr, "/api/v1/sessions").await;
        let done = |protocol: &str| {
            list["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| {
                    s["protocol"] == protocol && s["server"] == "gmail.com" && s["end"].is_string()
                })
                .map(|s| s["id"].as_str().unwrap().to_string())
        };
        if let (Some(a), Some(b)) = (done("smtp"), done("pop3")) {
            break (a, b);
        }
        assert!(Instant::now() < end, "{list}");
        tokio::task::yield_now().await;
    };
    let smtp_session = get_json(web.addr, &format!("/api/v1/sessions/{smtp_id}")).await;
    let lines: Vec<String> = smtp_session["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}: {}",
                l["dir"].as_str().unwrap(),
                l["text"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("C: MAIL FROM:<usr1@gmail.com>")),
        "{lines:?}"
    );
    let pop_session = get_json(web.addr, &format!("/api/v1/sessions/{pop_id}")).await;
    assert!(
        !pop_session.to_string().contains("password2-is-secret"),
        "{pop_session}"
    );
    let (status, headers, pcap) =
        http(web.addr, "GET", &format!("/api/v1/sessions/{smtp_id}/pcap")).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-disposition").ends_with(".pcapng\""));
    assert_eq!(&pcap[..4], b"\x0a\x0d\x0d\x0a", "a pcapng section header");
    assert!(pcap
        .windows(27)
        .any(|w| w == b"MAIL FROM:<usr1@gmail.com>\r"));
    web.stop.cancel();
    web.net.stop().await;
}

#[tokio::test]
async fn the_dashboard_page_is_served_with_a_strict_policy() {
    let web = web().await;
    let (status, headers, body) = http(web.addr, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").starts_with("text/html"));
    assert!(header(&headers, "content-security-policy").contains("script-src 'self'"));
    assert!(String::from_utf8_lossy(&body).contains("<html"));
    let (status, _, _) = http(web.addr, "GET", "/no-such-file.js").await;
    assert_eq!(status, 404);
    web.stop.cancel();
    web.net.stop().await;
}

/// `mailnet test --web`: the dashboard shows each scenario's result, and
/// stays up after the run until SIGTERM.
#[test]
fn test_web_shows_the_runs_and_stays_until_stopped() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailnet"))
        .args([
            "test",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/seeds/starttls.yaml"),
        ])
        .args(["--web", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("web: scenario results at http://") {
            addr = rest
                .split('/')
                .next()
                .and_then(|a| a.parse::<SocketAddr>().ok());
        }
        if line.starts_with("web: the results stay at") {
            break;
        }
    }
    let addr = addr.expect("the dashboard's address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs = runtime.block_on(get_json(addr, "/api/v1/runs"));
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "PASSED");
    assert!(runs[0]["steps"].as_array().is_some_and(|s| !s.is_empty()));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = exited
        .recv_timeout(DEADLINE)
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success());
}

/// `mailnet up --pcap DIR`: each session lands in DIR as a pcapng file when it closes.
#[test]
fn up_pcap_writes_each_session_as_it_closes() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let pcaps = dir.path().join("pcaps");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailnet"))
        .args(["--quiet", "up", "--ephemeral", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--pcap")
        .arg(&pcaps)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = 0u16;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("gmail.com ") {
            port = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        }
        if line.starts_with("ready") {
            break;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(send_mail(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: captured\r\n\r\nx\r\n",
    ));
    let end = Instant::now() + DEADLINE;
    let file = loop {
        let found = std::fs::read_dir(&pcaps)
            .map(|entries| {
                entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("gmail.com-smtp-"))
                })
            })
            .ok()
            .flatten();
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < end, "no pcap in {}", pcaps.display());
        std::thread::yield_now();
    };
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..4], b"\x0a\x0d\x0d\x0a");
    assert!(bytes.windows(18).any(|w| w == b"Subject: captured\r"));
    let _ = child.kill();
    let _ = child.wait();
}
