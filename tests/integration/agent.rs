//! `mailnet send` and `mailnet fetch` as a user runs them, against a network on free ports.

use mailnet::service::Service;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::boot;

const BIN: &str = env!("CARGO_BIN_EXE_mailnet");

fn mailnet(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("MAILNET_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn in_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hw3_prompt_answers_piped_in_arrive_as_the_message_described() {
    let net = boot().await;
    let dns = net.dns.unwrap().to_string();
    let answers = b"jasleen@cs.unc.edu\nsmithfd@cs.unc.edu\nTest message\nThis is a test.\n.\njasleen@cs.unc.edu\njeffay@cs.unc.edu\nSecond\nline 1\n..dot\n.\n";
    let (ok, stdout, stderr) =
        in_blocking(move || mailnet(&["send", "--dns", &dns], answers)).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("From:\nTo:\nSubject:\nMessage:\n"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("sent to ").count(), 2, "{stdout}");
    let unc = net.server("cs.unc.edu").unwrap();
    let stored =
        std::fs::read_to_string(&unc.host.store().messages("smithfd@cs.unc.edu").unwrap()[0].path)
            .unwrap();
    for header in [
        "From: <jasleen@cs.unc.edu>",
        "To: <smithfd@cs.unc.edu>",
        "Subject: Test message",
        "Date: ",
        "Message-ID: <",
    ] {
        assert!(stored.contains(header), "{header} missing:\n{stored}");
    }
    assert!(stored.ends_with("\r\n\r\nThis is a test.\r\n"), "{stored}");
    let second =
        std::fs::read_to_string(&unc.host.store().messages("jeffay@cs.unc.edu").unwrap()[0].path)
            .unwrap();
    assert!(
        second.ends_with("line 1\r\n..dot\r\n") || second.ends_with("line 1\r\n.dot\r\n"),
        "{second}"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_cross_domains_and_come_back_byte_identical() {
    let net = boot().await;
    let dns = net.dns.unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain((0..20_000u32).map(|i| (i * 31 % 251) as u8))
        .collect();
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(dir.path().join("photo.png"), &png).unwrap();
    std::fs::write(dir.path().join("data.bin"), &big).unwrap();
    let (p, b) = (dir.path().join("photo.png"), dir.path().join("data.bin"));
    let d = dns.clone();
    let (ok, stdout, stderr) = in_blocking(move || {
        mailnet(
            &[
                "send",
                "--dns",
                &d,
                "--from",
                "usr1@gmail.com",
                "--to",
                "usr1@mail.sustech.edu.cn",
                "--subject",
                "Images",
                "--body",
                "Here are two files",
                "--attach",
                p.to_str().unwrap(),
                "--attach",
                b.to_str().unwrap(),
                "--password",
                "password1",
                "--auth",
                "login",
                "--transcript",
            ],
            b"",
        )
    })
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("C: AUTH LOGIN") && stdout.contains("S: 235 2.7.0"),
        "{stdout}"
    );
    let qq = net.server("exmail.qq.com").unwrap();
    assert!(
        qq.host
            .store()
            .wait_until(Duration::from_secs(20), |s| s
                .count("usr1@mail.sustech.edu.cn")
                == 1)
            .await
    );

    let saved = dir.path().join("saved");
    let out = dir.path().join("message.eml");
    let (s, o) = (saved.clone(), out.clone());
    let (ok, _, stderr) = in_blocking(move || {
        mailnet(
            &[
                "fetch",
                "--dns",
                &dns,
                "--user",
                "usr1@mail.sustech.edu.cn",
                "--password",
                "password1",
                "--retr",
                "1",
                "--output",
                o.to_str().unwrap(),
                "--save-attachments",
                s.to_str().unwrap(),
            ],
            b"",
        )
    })
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(saved.join("photo.png")).unwrap(), png);
    assert_eq!(std::fs::read(saved.join("data.bin")).unwrap(), big);

    // Python's email parser finds the same parts.
    let script = "import email,sys\nm=email.message_from_binary_file(open(sys.argv[1],'rb'))\nparts=[(p.get_content_type(),p.get_filename(),len(p.get_payload(decode=True) or b'')) for p in m.walk() if not p.is_multipart()]\nprint(m['Subject']);print(parts)";
    if Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        let py = Command::new("python3")
            .args(["-c", script])
            .arg(&out)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&py.stdout);
        assert!(text.contains("Images"), "{text}");
        assert!(
            text.contains(&format!("('image/png', 'photo.png', {})", png.len())),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "('application/octet-stream', 'data.bin', {})",
                big.len()
            )),
            "{text}"
        );
    }
    // curl retrieves the same message over POP3.
    if Command::new("curl")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        let url = format!(
            "pop3://usr1%40mail.sustech.edu.cn:password1@127.0.0.1:{}/1",
            qq.addr(Service::Pop3).port()
        );
        let curl =
            in_blocking(move || Command::new("curl").args(["-sS", &url]).output().unwrap()).await;
        assert_eq!(curl.stdout, std::fs::read(&out).unwrap());
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_one_line_with_a_non_zero_exit_and_send_nothing() {
    let net = boot().await;
    let dns = net.dns.unwrap().to_string();
    let gmail = net.server("gmail.com").unwrap().clone();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--password".into(),
                "wrong".into(),
                "--to".into(),
                "bob@gmail.com".into(),
            ],
            "login refused by",
        ),
        (
            vec!["--to".into(), "x@nowhere.example".into()],
            "unknown recipient domain nowhere.example",
        ),
        (
            vec!["--to".into(), "nobody@gmail.com".into()],
            "refused every recipient: <nobody@gmail.com>: 550 5.1.1",
        ),
        (
            vec![
                "--to".into(),
                "bob@gmail.com".into(),
                "--server".into(),
                "127.0.0.1:1".into(),
            ],
            "cannot reach 127.0.0.1:1",
        ),
        (vec!["--to".into(), "bob@".into()], "bad address syntax"),
        (
            vec![
                "--to".into(),
                "bob@gmail.com".into(),
                "--attach".into(),
                "/no/such/file".into(),
            ],
            "attachment /no/such/file",
        ),
    ];
    for (extra, expected) in cases {
        let d = dns.clone();
        let (ok, _, stderr) = in_blocking(move || {
            let mut args = vec![
                "send".to_string(),
                "--dns".into(),
                d,
                "--from".into(),
                "usr1@gmail.com".into(),
                "--subject".into(),
                "x".into(),
            ];
            args.extend(extra);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            mailnet(&refs, b"")
        })
        .await;
        assert!(!ok, "{expected}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
    }
    assert_eq!(
        gmail.host.store().count("bob@gmail.com"),
        0,
        "nothing was sent"
    );
    assert!(gmail.host.queue().is_empty(), "nothing was queued");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_lists_downloads_only_new_mail_and_deletes() {
    let net = boot().await;
    let dns = net.dns.unwrap().to_string();
    let gmail = net.server("gmail.com").unwrap().clone();
    for subject in ["first", "second"] {
        crate::support::send_mail(
            gmail.addr(Service::Smtp),
            "usr1@gmail.com",
            &["bob@gmail.com"],
            &format!("Subject: {subject}\r\n\r\nx\r\n"),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let (d, m) = (dns.clone(), maildir.clone());
    let (ok, stdout, stderr) = in_blocking({
        let d = d.clone();
        move || {
            mailnet(
                &[
                    "fetch",
                    "--dns",
                    &d,
                    "--user",
                    "bob@gmail.com",
                    "--password",
                    "password2",
                ],
                b"",
            )
        }
    })
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("first") && stdout.contains("second") && stdout.contains("2 messages"),
        "{stdout}"
    );
    let (ok, _, stderr) = in_blocking({
        let (d, m) = (d.clone(), m.clone());
        move || fetch_new(&d, &m)
    })
    .await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("2 messages downloaded"), "{stderr}");
    crate::support::send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: third\r\n\r\nx\r\n",
    )
    .await;
    let (ok, _, stderr) = in_blocking(move || fetch_new(&d, &m)).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1 message downloaded"), "{stderr}");
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 3);
    let d = dns.clone();
    let (ok, _, stderr) = in_blocking(move || {
        mailnet(
            &[
                "fetch",
                "--dns",
                &d,
                "--user",
                "bob@gmail.com",
                "--password",
                "password2",
                "--retr",
                "1",
                "--delete",
            ],
            b"",
        )
    })
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(gmail.host.store().count("bob@gmail.com"), 2);
    // fetch: STLS by default, implicit TLS on the POP3S port when asked.
    for (port, tls) in [
        (gmail.addr(Service::Pop3), "auto"),
        (gmail.addr(Service::Pop3s), "implicit"),
    ] {
        let server = port.to_string();
        let (ok, stdout, stderr) = in_blocking(move || {
            mailnet(
                &[
                    "fetch",
                    "--server",
                    &server,
                    "--tls",
                    tls,
                    "--user",
                    "bob@gmail.com",
                    "--password",
                    "password2",
                ],
                b"",
            )
        })
        .await;
        assert!(ok, "{tls}: {stderr}");
        assert!(stdout.contains("2 messages"), "{tls}: {stdout}");
    }
    net.stop().await;
}

/// `mailnet fetch --all DIR --new` for bob@gmail.com.
fn fetch_new(dns: &str, dir: &std::path::Path) -> (bool, String, String) {
    mailnet(
        &[
            "fetch",
            "--dns",
            dns,
            "--user",
            "bob@gmail.com",
            "--password",
            "password2",
            "--all",
            dir.to_str().unwrap(),
            "--new",
        ],
        b"",
    )
}

/// swaks-style sending: `--header` adds fields, `--data` sends a file as
/// the whole message; `--server` sends without any DNS; mixed recipients
/// name only those that got the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_headers_raw_data_and_mixed_recipients() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap().clone();
    let server = gmail.addr(Service::Smtp).to_string();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.eml");
    std::fs::write(&raw, "Subject: raw data\nX-Raw: yes\n\nas written\n").unwrap();
    let (s, r) = (server.clone(), raw.clone());
    let (ok, stdout, stderr) = in_blocking(move || {
        mailnet(
            &[
                "send",
                "--server",
                &s,
                "--from",
                "usr1@gmail.com",
                "--to",
                "bob@gmail.com",
                "--data",
                r.to_str().unwrap(),
            ],
            b"",
        )
    })
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("sent to bob@gmail.com via "), "{stdout}");
    let s = server.clone();
    let (ok, _, stderr) = in_blocking(move || {
        mailnet(
            &[
                "send",
                "--server",
                &s,
                "--from",
                "usr1@gmail.com",
                "--to",
                "hcy@gmail.com",
                "--header",
                "X-Test-Run: 42",
                "--subject",
                "with header",
                "--body",
                "b",
            ],
            b"",
        )
    })
    .await;
    assert!(ok, "{stderr}");
    let s = server.clone();
    let (ok, stdout, stderr) = in_blocking(move || {
        mailnet(
            &[
                "send",
                "--server",
                &s,
                "--from",
                "usr1@gmail.com",
                "--to",
                "akc@gmail.com",
                "--to",
                "ghost@gmail.com",
                "--body",
                "b",
            ],
            b"",
        )
    })
    .await;
    assert!(!ok, "a refused recipient fails the command");
    assert!(stdout.starts_with("sent to akc@gmail.com via "), "{stdout}");
    assert!(!stdout.contains("ghost"), "{stdout}");
    assert!(stderr.contains("<ghost@gmail.com>"), "{stderr}");

    let store = gmail.host.store();
    let stored =
        std::fs::read_to_string(&store.messages("bob@gmail.com").unwrap()[0].path).unwrap();
    assert!(
        stored.ends_with("Subject: raw data\r\nX-Raw: yes\r\n\r\nas written\r\n"),
        "{stored}"
    );
    let stored =
        std::fs::read_to_string(&store.messages("hcy@gmail.com").unwrap()[0].path).unwrap();
    assert!(stored.contains("\r\nX-Test-Run: 42\r\n"), "{stored}");
    let (ok, _, stderr) = in_blocking(move || {
        mailnet(
            &[
                "send",
                "--server",
                &server,
                "--from",
                "usr1@gmail.com",
                "--to",
                "bob@gmail.com",
                "--header",
                "broken",
            ],
            b"",
        )
    })
    .await;
    assert!(!ok && stderr.contains("expected `Name: value`"), "{stderr}");
    net.stop().await;
}

/// A message acknowledged but still in the server's delivery journal (the
/// server was killed before making its Maildir file) is shown by `inspect`
/// like the others, and once only when its file exists too.
#[test]
fn inspect_shows_mail_still_in_the_delivery_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("gmail.com/mail");
    let placed = mail.join("bob@gmail.com/new");
    std::fs::create_dir_all(&placed).unwrap();
    let first = "Subject: placed\r\n\r\nx\r\n";
    let second = "Subject: journalled\r\n\r\ny\r\n";
    std::fs::write(placed.join("1,S=22"), first).unwrap();
    // The journal's format: a header saying how far records are placed
    // (0x28: none), then `M <size> <name> <folder>` lines, each followed by
    // the message. The first record is placed already, its commit lost.
    let mut journal = b"mailnet-journal 1 done=0000000000000028\n".to_vec();
    for (name, folder, body) in [
        ("1,S=22", "bob@gmail.com", first),
        ("2,S=26", "bob@gmail.com", second),
        ("3,S=26", "alice@gmail.com", second),
    ] {
        journal.extend_from_slice(format!("M {} {name} {folder}\n{body}", body.len()).as_bytes());
    }
    std::fs::write(mail.join(".deliveries"), journal).unwrap();
    let (ok, stdout, stderr) = mailnet(&["inspect", dir.path().to_str().unwrap()], b"");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("  alice@gmail.com: 1 message, 26 octets\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  bob@gmail.com: 2 messages, 48 octets\n"),
        "{stdout}"
    );
    assert!(stdout.contains("octets  placed\n"), "{stdout}");
    assert!(stdout.contains("octets  journalled\n"), "{stdout}");
    let bob = mail.join("bob@gmail.com");
    let (ok, stdout, stderr) = mailnet(&["inspect", bob.to_str().unwrap()], b"");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("== message 2 (2,S=26, in the delivery journal)"),
        "{stdout}"
    );
    assert!(!stdout.contains("== message 3"), "{stdout}");
}

/// `inspect DATA_DIR` lists every server, mailbox and message with sizes
/// and subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_lists_a_whole_data_directory() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap().clone();
    gmail
        .host
        .store()
        .deliver("bob@gmail.com", b"Subject: first one\r\n\r\nx\r\n")
        .unwrap();
    gmail
        .host
        .store()
        .deliver("bob@gmail.com", b"Subject: second\r\n\r\nyy\r\n")
        .unwrap();
    let data = net.data_dir.clone();
    let (ok, stdout, stderr) =
        in_blocking(move || mailnet(&["inspect", data.to_str().unwrap()], b"")).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("gmail.com\n  bob@gmail.com: 2 messages, "),
        "{stdout}"
    );
    assert!(stdout.contains("octets  first one\n"), "{stdout}");
    assert!(stdout.contains("octets  second\n"), "{stdout}");
    net.stop().await;
}

/// `send` uses STARTTLS when offered (verified against the network CA), and
/// implicit TLS on an SMTPS port with `--tls implicit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_uses_tls_by_default_and_implicit_tls_when_asked() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap().clone();
    let plain = gmail.addr(Service::Smtp).to_string();
    let implicit = gmail.addr(Service::Smtps).to_string();
    let (ok, _, stderr) = in_blocking(move || {
        mailnet(
            &[
                "send",
                "--server",
                &plain,
                "--from",
                "usr1@gmail.com",
                "--to",
                "bob@gmail.com",
                "--subject",
                "starttls",
                "--body",
                "x",
            ],
            b"",
        )
    })
    .await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = in_blocking(move || {
        mailnet(
            &[
                "send",
                "--server",
                &implicit,
                "--tls",
                "implicit",
                "--from",
                "usr1@gmail.com",
                "--to",
                "bob@gmail.com",
                "--subject",
                "implicit",
                "--body",
                "x",
            ],
            b"",
        )
    })
    .await;
    assert!(ok, "{stderr}");
    for message in gmail.host.store().messages("bob@gmail.com").unwrap() {
        let raw = std::fs::read_to_string(&message.path).unwrap();
        assert!(raw.contains("with ESMTPS id"), "{raw}");
    }
    assert_eq!(gmail.host.store().count("bob@gmail.com"), 2);
    // fetch: STLS by default, implicit TLS on the POP3S port when asked.
    for (port, tls) in [
        (gmail.addr(Service::Pop3), "auto"),
        (gmail.addr(Service::Pop3s), "implicit"),
    ] {
        let server = port.to_string();
        let (ok, stdout, stderr) = in_blocking(move || {
            mailnet(
                &[
                    "fetch",
                    "--server",
                    &server,
                    "--tls",
                    tls,
                    "--user",
                    "bob@gmail.com",
                    "--password",
                    "password2",
                ],
                b"",
            )
        })
        .await;
        assert!(ok, "{tls}: {stderr}");
        assert!(stdout.contains("2 messages"), "{tls}: {stdout}");
    }
    net.stop().await;
}
