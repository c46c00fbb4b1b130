//! Clients nobody here wrote: Python's smtplib/poplib, dnspython, curl, swaks, dig.
//!
//! On a machine without a tool, its test says so and passes; with
//! `MAILNET_REQUIRE_INTEROP=1` (set by `.ci/run`, which installs them) a
//! missing tool fails the test instead.

use mailnet::service::Service;
use std::process::Command;

use crate::support::boot;

fn have(tool: &str, probe: &[&str]) -> bool {
    let found = Command::new(tool)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("MAILNET_REQUIRE_INTEROP").is_some() {
            panic!("{tool} is required (MAILNET_REQUIRE_INTEROP is set) but is not installed");
        }
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

/// Whether python3 can import `module` (a Debian package or a venv's);
/// like [`have`], a missing one fails the run under MAILNET_REQUIRE_INTEROP.
fn have_python(module: &str, package: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("MAILNET_REQUIRE_INTEROP").is_some() {
            panic!("{package} is required (MAILNET_REQUIRE_INTEROP is set) but is not installed");
        }
        eprintln!("skipped: {package} is not installed");
    }
    found
}

/// Whether the tests run as root (namespaces, ports below 1024).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

fn script(name: &str) -> String {
    format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_and_poplib() {
    if !have("python3", &["--version"]) {
        return;
    }
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let qq = net.server("exmail.qq.com").unwrap();
    let (smtp, pop3, qq_smtp) = (
        gmail.addr(Service::Smtp).port().to_string(),
        gmail.addr(Service::Pop3).port().to_string(),
        qq.addr(Service::Smtp).port().to_string(),
    );
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args([&script("clients.py"), &smtp, &pop3, &qq_smtp]))
    })
    .await
    .unwrap();
    assert!(out.contains("all python client checks passed"), "{out}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnspython_resolver() {
    if !have_python("dns.resolver", "dnspython") {
        return;
    }
    let net = boot().await;
    let dns = net.dns.unwrap().port().to_string();
    let qq = net
        .server("exmail.qq.com")
        .unwrap()
        .addr(Service::Smtp)
        .port()
        .to_string();
    let pop = net
        .server("gmail.com")
        .unwrap()
        .addr(Service::Pop3)
        .port()
        .to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args([&script("dns_check.py"), &dns, &qq, &pop]))
    })
    .await
    .unwrap();
    assert!(out.contains("dns checks passed"), "{out}");
    net.stop().await;
}

/// mailnet relays by MX to aiosmtpd (tests/interop/aiosmtpd_peer.py), a
/// server it did not write: `SMTPUTF8` and `BODY=8BITMIME` are passed on,
/// a UTF-8 recipient arrives whole, and the bytes are the sender's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_into_aiosmtpd_passes_smtputf8_8bitmime_and_the_bytes() {
    if !have_python("aiosmtpd", "aiosmtpd (python3-aiosmtpd)") {
        return;
    }
    let mut peer = Command::new("python3")
        .args([&script("aiosmtpd_peer.py"), "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(peer.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    let port: u16 = first
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("aiosmtpd said {first:?}"));
    let yaml = format!(
        "dns: 127.0.0.1:0\nservers:\n  - name: mail.sender.test\n    domains: [sender.test]\n    smtp: {{ port: 0 }}\n    pop3: {{ port: 0 }}\n    users:\n      - {{ address: alice@sender.test, password: pw }}\n  - name: peer.test\n    domains: [peer.test]\n    smtp: {{ port: {port} }}\n    pop3: {{ port: 9 }}\n"
    );
    let network = mailnet::network::Network::parse(&yaml, "peer.yaml").unwrap();
    let net = mailnet::orchestrator::RunningNetwork::start(
        network,
        mailnet::orchestrator::UpOptions {
            skip: vec!["peer.test".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let smtp = net.server("mail.sender.test").unwrap().addr(Service::Smtp);
    let utf8 = "From: alice@sender.test\r\nTo: 用户@peer.test\r\nSubject: héllo\r\n\r\nnaïve café, 8-bit\r\n";
    let ascii =
        "From: alice@sender.test\r\nTo: bob@peer.test\r\nSubject: plain\r\n\r\nseven bits\r\n";
    for (params, rcpt, body) in [
        (" SMTPUTF8 BODY=8BITMIME", "用户@peer.test", utf8),
        ("", "bob@peer.test", ascii),
    ] {
        let mut c = crate::support::Raw::connect(smtp).await;
        assert!(c.reply().await.starts_with("220"));
        c.cmd("EHLO client.example").await;
        let mail = c
            .cmd(&format!("MAIL FROM:<alice@sender.test>{params}"))
            .await;
        assert!(mail.starts_with("250"), "{mail}");
        let rcpt_reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(rcpt_reply.starts_with("250"), "{rcpt_reply}");
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send(body.as_bytes()).await;
        assert!(c.cmd(".").await.starts_with("250"));
        c.cmd("QUIT").await;
    }
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        peer.wait().unwrap();
        rest
    })
    .await
    .unwrap();
    let seen: Vec<serde_json::Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("aiosmtpd: {rest}")))
        .collect();
    assert_eq!(seen.len(), 2, "{rest}");
    let of = |rcpt: &str| {
        seen.iter()
            .find(|m| m["rcpt_tos"][0] == rcpt)
            .unwrap_or_else(|| panic!("nothing for {rcpt}: {rest}"))
    };
    let content = |m: &serde_json::Value| {
        let hex = m["content"].as_str().unwrap();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let options = |m: &serde_json::Value| m["mail_options"].to_string();
    let first = of("用户@peer.test");
    assert!(
        options(first).contains("SMTPUTF8") && options(first).contains("BODY=8BITMIME"),
        "{}",
        options(first)
    );
    assert!(content(first).ends_with(utf8.as_bytes()), "{rest}");
    assert!(content(first).starts_with(b"Received: "), "{rest}");
    let second = of("bob@peer.test");
    assert!(!options(second).contains("SMTPUTF8"), "{}", options(second));
    assert!(content(second).ends_with(ascii.as_bytes()), "{rest}");
    net.stop().await;
}

/// A domain name of about 200 octets: its `MX` answer does not fit 512.
fn long_name(first: char) -> String {
    let labels: Vec<String> = (0..3)
        .map(|i| std::iter::repeat_n((first as u8 + i) as char, 60).collect())
        .collect();
    format!("{}.test", labels.join("."))
}

/// Truncated UDP answers as dnspython and kdig parse them
/// (tests/interop/dns_truncation.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_answers_parse_in_dnspython_and_kdig() {
    if !have_python("dns.message", "dnspython") {
        return;
    }
    let (domain, mx) = (long_name('a'), long_name('m'));
    let yaml = format!(
        "dns: 127.0.0.1:0\nservers:\n  - name: long.test\n    domains: [{domain}]\n    mx: {mx}\n    smtp: {{ port: 0 }}\n    pop3: {{ port: 0 }}\n"
    );
    let network = mailnet::network::Network::parse(&yaml, "long.yaml").unwrap();
    let net = mailnet::orchestrator::RunningNetwork::start(network, Default::default())
        .await
        .unwrap();
    let dns = net.dns.unwrap().port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args([&script("dns_truncation.py"), &dns, &domain]))
    })
    .await
    .unwrap();
    assert!(out.contains("all truncation checks passed"), "{out}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_answers() {
    if !have("dig", &["-v"]) {
        return;
    }
    let net = boot().await;
    let port = net.dns.unwrap().port().to_string();
    let qq = net
        .server("exmail.qq.com")
        .unwrap()
        .addr(Service::Smtp)
        .port();
    let out = tokio::task::spawn_blocking(move || {
        let dig = |args: &[&str]| {
            run(Command::new("dig")
                .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"])
                .args(args))
        };
        (
            dig(&["+short", "mail.sustech.edu.cn", "MX"]),
            dig(&["+short", "SRV", "_smtp._tcp.mxbiz1.qq.com"]),
            dig(&["example.org", "A"]),
            dig(&["+tcp", "+short", "smtp.gmail.com", "A"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.0.trim(), "10 mxbiz1.qq.com.");
    assert_eq!(out.1.trim(), format!("0 0 {qq} mxbiz1.qq.com."));
    assert!(out.2.contains("status: REFUSED"), "{}", out.2);
    assert_eq!(out.3.trim(), "127.0.0.1");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_smtp_and_pop3() {
    if !have("curl", &["--version"]) {
        return;
    }
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail.txt");
    let message =
        "From: usr1@gmail.com\r\nTo: bob@gmail.com\r\nSubject: curl\r\n\r\nsent by curl\r\n";
    std::fs::write(&mail, message).unwrap();
    let (smtp, pop3) = (
        gmail.addr(Service::Smtp).port(),
        gmail.addr(Service::Pop3).port(),
    );
    let (retr, uidl) = tokio::task::spawn_blocking(move || {
        run(Command::new("curl")
            .args([
                "-sS",
                &format!("smtp://127.0.0.1:{smtp}"),
                "--mail-from",
                "usr1@gmail.com",
                "--mail-rcpt",
                "bob@gmail.com",
                "-T",
            ])
            .arg(&mail));
        let retr = run(Command::new("curl").args([
            "-sS",
            &format!("pop3://bob%40gmail.com:password2@127.0.0.1:{pop3}/1"),
        ]));
        let uidl = run(Command::new("curl").args([
            "-sS",
            &format!("pop3://bob%40gmail.com:password2@127.0.0.1:{pop3}/"),
            "-X",
            "UIDL",
        ]));
        (retr, uidl)
    })
    .await
    .unwrap();
    assert!(retr.ends_with(message), "{retr}");
    let uid = &gmail.host.store().messages("bob@gmail.com").unwrap()[0].uid;
    assert_eq!(uidl.trim(), format!("1 {uid}"));
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_with_auth_login_and_pipelining() {
    if !have("swaks", &["--version"]) {
        return;
    }
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap().clone();
    let port = gmail.addr(Service::Smtp).port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("swaks").args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "usr1@gmail.com",
            "--to",
            "hcy@gmail.com",
            "--auth",
            "LOGIN",
            "--auth-user",
            "usr1@gmail.com",
            "--auth-password",
            "password1",
            "--pipeline",
            "--header",
            "Subject: swaks",
            "--body",
            "via swaks",
        ]))
    })
    .await
    .unwrap();
    assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
    assert_eq!(gmail.host.store().count("hcy@gmail.com"), 1);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_relay_cases_of_the_cs305_grader() {
    if !have("python3", &["--version"]) {
        return;
    }
    let net = boot().await;
    let qq = net.server("exmail.qq.com").unwrap().clone();
    let gmail = net.server("gmail.com").unwrap().clone();
    let port = qq.addr(Service::Smtp).port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args([&script("relay_send.py"), &port]))
    })
    .await
    .unwrap();
    assert!(out.contains("sent"), "{out}");
    let deadline = std::time::Duration::from_secs(15);
    assert!(
        gmail
            .host
            .store()
            .wait_until(deadline, |s| s.count("usr1@gmail.com") == 1)
            .await
    );
    assert!(
        qq.host
            .store()
            .wait_until(deadline, |s| s.count("usr1@mail.sustech.edu.cn") == 1)
            .await
    );
    let (g, q) = (
        gmail.addr(Service::Pop3).port().to_string(),
        qq.addr(Service::Pop3).port().to_string(),
    );
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args([&script("relay_check.py"), &g, &q]))
    })
    .await
    .unwrap();
    assert!(out.contains("relay checks passed"), "{out}");
    net.stop().await;
}

/// `up --standard-ports` in a network namespace of its own: servers on
/// 127.0.0.2, 127.0.0.3, … port 25 and 110, the DNS on port 53, found by a
/// plain MX lookup (dig) and used by smtplib and poplib. Needs root (CI).
#[test]
fn standard_ports_are_found_by_mx_like_a_real_mta() {
    let root = is_root();
    if !root
        || !have("unshare", &["--version"])
        || !have("dig", &["-v"])
        || !have("python3", &["--version"])
    {
        eprintln!("skipped: needs root, unshare, dig and python3");
        return;
    }
    let out = run(Command::new("unshare").args([
        "--net",
        &script("standard_ports.sh"),
        env!("CARGO_BIN_EXE_mailnet"),
    ]));
    assert!(
        out.contains("addresses: exmail.qq.com 127.0.0.2, gmail.com 127.0.0.3"),
        "{out}"
    );
    assert!(
        out.contains("mx gmail-smtp-in.l.google.com. 127.0.0.3"),
        "{out}"
    );
    assert!(
        out.contains("relayed by MX to 127.0.0.3 port 25, submitted on port 587, read on port 110"),
        "{out}"
    );
}

/// Postfix and mailnet relay to each other by plain MX lookups, both ways,
/// in namespaces of their own (network, mounts for `/etc/resolv.conf`, and
/// pids, so nothing outlives the test): `up --standard-ports --skip
/// postfix.test` publishes postfix.test (127.0.0.4) for a private Postfix
/// instance to serve. Postfix delivers to usr1@gmail.com at 127.0.0.3:25
/// (read back with poplib), and exmail.qq.com relays to alice@postfix.test
/// (read from Postfix's Maildir); both messages carry both hops' `Received:`.
/// Needs root and Postfix (CI installs it).
#[test]
fn postfix_relays_both_ways_with_standard_ports() {
    let root = is_root();
    if !root
        || !have("unshare", &["--version"])
        || !have("dig", &["-v"])
        || !have("python3", &["--version"])
        || !have("postconf", &["-d", "mail_version"])
    {
        eprintln!("skipped: needs root, unshare, dig, python3 and postfix");
        return;
    }
    let out = run(Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
        ])
        .args([&script("postfix_relay.sh"), env!("CARGO_BIN_EXE_mailnet")]));
    for line in [
        "addresses: exmail.qq.com 127.0.0.2, gmail.com 127.0.0.3",
        "skipped: postfix.test 127.0.0.4 SMTP 25 POP3 110",
        "mx postfix.test mx.postfix.test. 127.0.0.4",
        "listening on 127.0.0.4:25",
        // 1. Postfix -> mailnet, found by MX.
        "postfix to mailnet: usr1@gmail.com read it on 127.0.0.3:110",
        "mailnet hop: from mx.postfix.test ([127.0.0.4]) by gmail.com (mailnet)",
        "postfix hop: by mx.postfix.test (Postfix)",
        "postfix log: to=<usr1@gmail.com> relay=gmail-smtp-in.l.google.com[127.0.0.3]:25 status=sent",
        // 2. mailnet -> Postfix, found by MX.
        "mailnet to postfix: alice@postfix.test has it in Postfix's Maildir",
        "postfix hop: from exmail.qq.com by mx.postfix.test (Postfix)",
        "mailnet hop: by exmail.qq.com (mailnet)",
        "utf8 to postfix: 用户@postfix.test has it, SMTPUTF8 passed on to strict_smtputf8",
        "postfix relay checks passed",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

/// Without the privilege for ports below 1024, one line says what to do.
#[test]
fn standard_ports_without_privilege_say_how_to_get_it() {
    let root = is_root();
    if !root || !have("unshare", &["--version"]) || !have("setpriv", &["--version"]) {
        eprintln!("skipped: needs root (to drop it), unshare and setpriv");
        return;
    }
    let out = Command::new("unshare")
        .args([
            "--net",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args([env!("CARGO_BIN_EXE_mailnet"), "up", "--standard-ports"])
        .output()
        .unwrap();
    crate::support::assert_one_line_error(
        &out,
        &["ports below 1024 need privilege", "cap_net_bind_service"],
    );
}

/// Issue 13's conformance points as Python's email, smtplib, curl and dig
/// see them (tests/interop/conformance.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_as_real_clients_see_it() {
    if !have("python3", &["--version"]) {
        return;
    }
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let qq = net.server("exmail.qq.com").unwrap();
    let args: Vec<String> = [
        gmail.addr(Service::Smtp).port(),
        gmail.addr(Service::Pop3).port(),
        qq.addr(Service::Smtp).port(),
        qq.addr(Service::Pop3).port(),
        net.dns.unwrap().port(),
    ]
    .iter()
    .map(u16::to_string)
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3")
            .arg(script("conformance.py"))
            .args(&args))
    })
    .await
    .unwrap();
    assert!(out.contains("all conformance checks passed"), "{out}");
    net.stop().await;
}

/// STARTTLS, STLS and implicit TLS with the network CA, as openssl s_client,
/// Python's smtplib/poplib, curl, swaks, msmtp and fetchmail use them
/// (tests/interop/tls.py); the servers' transcripts show the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_as_openssl_and_python_use_it() {
    if !have("python3", &["--version"]) || !have("openssl", &["version"]) {
        return;
    }
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let args = vec![
        gmail.addr(Service::Smtp).port().to_string(),
        gmail.addr(Service::Pop3).port().to_string(),
        gmail.addr(Service::Smtps).port().to_string(),
        gmail.addr(Service::Pop3s).port().to_string(),
        net.ca_cert
            .clone()
            .expect("the network CA")
            .display()
            .to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").arg(script("tls.py")).args(&args))
    })
    .await
    .unwrap();
    assert!(out.contains("all tls checks passed"), "{out}");
    // The servers' own transcripts of those sessions (what `--transcripts`
    // prints and `<data>/<server>/transcripts/*.log` keeps; read here from
    // memory, as the log file is flushed when sessions end) say TLS was
    // established, with its version, and go on with the decrypted lines.
    for (service, next) in [(Service::Smtp, "EHLO"), (Service::Pop3, "USER")] {
        let sessions = gmail.host.log(service).sessions();
        let after_tls: Vec<_> = sessions
            .iter()
            .filter_map(|(_, lines)| {
                let at = lines
                    .iter()
                    .position(|l| l.line.text.starts_with("[TLS established (TLSv1.3, "))?;
                Some(&lines[at + 1..])
            })
            .collect();
        assert!(
            !after_tls.is_empty(),
            "no {service:?} transcript says `TLS established (TLSv1.3`: {sessions:#?}"
        );
        assert!(
            after_tls
                .iter()
                .any(|after| after.iter().any(|l| l.line.text.starts_with(next))),
            "{service:?}: no decrypted {next} after TLS: {after_tls:#?}"
        );
    }
    net.stop().await;
}

/// `mailnet ca --install` puts the CA in the system bundle (openssl then
/// trusts it) and `--uninstall` takes it out; run in a private mount
/// namespace with an empty trust store, as root (CI).
#[test]
fn ca_install_and_uninstall_use_the_system_trust_store() {
    let root = is_root();
    if !root
        || !have("unshare", &["--version"])
        || !have("update-ca-certificates", &["--help"])
        || !have("openssl", &["version"])
    {
        eprintln!("skipped: needs root, unshare, update-ca-certificates and openssl");
        return;
    }
    let out = run(Command::new("unshare").args([
        "--mount",
        &script("ca_install.sh"),
        env!("CARGO_BIN_EXE_mailnet"),
    ]));
    assert!(out.contains("installed: in the system bundle"), "{out}");
    assert!(out.contains("installed: openssl trusts it"), "{out}");
    assert!(out.contains("uninstalled: gone from the bundle"), "{out}");
}

/// Whether this machine lets us make network namespaces: adds and deletes
/// one with a name of its own (a container without the privilege says no).
fn netns_permitted() -> bool {
    let name = format!(
        "mailnet-probe-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let added = ip(&["netns", "add", &name]);
    added && ip(&["netns", "del", &name])
}

/// Real machines on one box (tests/interop/hub_netns.py): a class hub and
/// two students' networks in network namespaces of their own on a bridge
/// (192.0.2.1–3, a client at .4), joined with `up --join`. dig and nsupdate
/// read and update the hub; mail is relayed both ways, bounced, refused as
/// open relay, held over a link cut, sent and fetched by `mailnet send/fetch
/// --dns HUB`; a stopped network's records leave the hub, and an unreachable
/// hub is one line. Needs root (CI sets MAILNET_REQUIRE_NETNS=1: no skipping).
#[test]
fn hub_peer_mailing_across_namespaces() {
    let required = std::env::var("MAILNET_REQUIRE_NETNS").as_deref() == Ok("1");
    let skip = |why: &str| {
        if required {
            panic!("{why}, and MAILNET_REQUIRE_NETNS=1 is set");
        }
        eprintln!("skipped: {why}");
    };
    if !is_root() {
        return skip("network namespaces need root");
    }
    if !netns_permitted() {
        return skip("`ip netns add` is not permitted here");
    }
    if !have("python3", &["--version"]) || !have("dig", &["-v"]) || !have("nsupdate", &["-V"]) {
        return skip("needs python3, dig and nsupdate");
    }
    let out =
        run(Command::new("python3").args([&script("hub_netns.py"), env!("CARGO_BIN_EXE_mailnet")]));
    for line in [
        "ok: a: bob.test MX is mx.bob.test at the hub",
        "ok: a: mx.bob.test A is 192.0.2.3",
        "ok: a: _submission._tcp.bob.test SRV has port 3525",
        "ok: b: a1@alice.test -> b1@bob.test relayed from 192.0.2.2 to 192.0.2.3",
        "ok: b: b1@bob.test -> a1@alice.test relayed from 192.0.2.3 to 192.0.2.2",
        "ok: c: b1 got a multipart/report DSN for nobody@alice.test with alice's 550",
        "ok: d: 192.0.2.4 without AUTH: RCPT TO:<x@alice.test> at bob gets 554",
        "ok: d: 192.0.2.4 without AUTH: RCPT TO:<b1@bob.test> (local) at bob gets 250",
        "ok: e: link up again: all 3 arrived exactly once",
        "ok: e: none of them bounced to b1",
        "ok: f: nsupdate without a key is REFUSED",
        "ok: f: dig then shows carol.test MX 10 mx.carol.test.",
        "ok: g: with another machine's certificate, send says why in one line and how to go on",
        "ok: g: mailnet fetch --dns 192.0.2.1:53 from 192.0.2.4 lists it",
        "ok: h: alice.test MX still answers",
        "ok: i: up --join 192.0.2.99:53 exits 1",
        "hub netns: all checks passed",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

/// A session exported as pcapng reads in real tshark: the SMTP and POP3
/// dissectors find the commands, "Follow TCP stream" gives back the whole
/// dialogue, and with checksum validation on no checksum is bad. The
/// sessions are written by hand, so this needs no network, only tshark.
#[test]
fn pcap_export_reads_in_tshark() {
    use mailnet::capture::pcap::to_pcapng;
    use mailnet::capture::{Capture, Chunk};
    use std::time::{Duration, SystemTime};

    if !have("tshark", &["--version"]) {
        return;
    }
    // A dialogue: who speaks, what they say, one step apart in time.
    fn capture(server_port: u16, lines: &[(bool, &str)]) -> Capture {
        let opened = SystemTime::now();
        let step = |n: usize| opened + Duration::from_millis(10 * (n as u64 + 1));
        Capture {
            client: ([127, 0, 0, 1], 51000).into(),
            server: ([127, 0, 0, 1], server_port).into(),
            opened,
            closed: Some(step(lines.len())),
            chunks: lines
                .iter()
                .enumerate()
                .map(|(n, (from_client, text))| Chunk {
                    from_client: *from_client,
                    at: step(n),
                    bytes: text.as_bytes().to_vec(),
                })
                .collect(),
            truncated: false,
        }
    }
    let smtp = [
        (false, "220 gmail.com ESMTP mailnet\r\n"),
        (true, "EHLO client.example\r\n"),
        (false, "250-gmail.com\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
        (true, "MAIL FROM:<alice@qq.com>\r\n"),
        (false, "250 2.1.0 OK\r\n"),
        (true, "RCPT TO:<bob@gmail.com>\r\n"),
        (false, "250 2.1.5 OK\r\n"),
        (true, "DATA\r\n"),
        (false, "354 End data with <CR><LF>.<CR><LF>\r\n"),
        (
            true,
            "From: alice@qq.com\r\nTo: bob@gmail.com\r\nSubject: pcap test\r\n\r\nHello Bob.\r\n.\r\n",
        ),
        (false, "250 2.0.0 queued as 1A2B3C\r\n"),
        (true, "QUIT\r\n"),
        (false, "221 2.0.0 Bye\r\n"),
    ];
    let pop3 = [
        (false, "+OK POP3 server ready\r\n"),
        (true, "USER bob\r\n"),
        (false, "+OK\r\n"),
        (true, "PASS secret\r\n"),
        (false, "+OK logged in\r\n"),
        (true, "STAT\r\n"),
        (false, "+OK 1 54\r\n"),
        (true, "RETR 1\r\n"),
        // One chunk, as mailnet's recorder keeps consecutive writes; the
        // export sends the status line in a segment of its own.
        (
            false,
            "+OK 54 octets\r\nFrom: alice@qq.com\r\nSubject: pcap test\r\n\r\nHello Bob.\r\n.\r\n",
        ),
        (true, "QUIT\r\n"),
        (false, "+OK bye\r\n"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let smtp_file = dir.path().join("smtp.pcapng");
    let pop3_file = dir.path().join("pop3.pcapng");
    std::fs::write(&smtp_file, to_pcapng(&capture(2125, &smtp))).unwrap();
    std::fs::write(&pop3_file, to_pcapng(&capture(2210, &pop3))).unwrap();
    let tshark = |file: &std::path::Path, args: &[&str]| {
        run(Command::new("tshark").arg("-r").arg(file).args(args))
    };

    let commands = tshark(
        &smtp_file,
        &[
            "-d",
            "tcp.port==2125,smtp",
            "-Y",
            "smtp",
            "-T",
            "fields",
            "-e",
            "smtp.req.command",
        ],
    );
    // One line per packet; pipelined commands would share one, comma-separated.
    let commands: Vec<&str> = commands.split(['\n', ',']).collect();
    for command in ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"] {
        assert!(commands.contains(&command), "no {command} in {commands:?}");
    }

    // "Follow TCP stream" gives back every line, in order.
    let follow = tshark(&smtp_file, &["-z", "follow,tcp,ascii,0", "-q"]);
    let mut rest = follow.as_str();
    for line in smtp.iter().flat_map(|(_, text)| text.lines()) {
        let Some(at) = rest.find(line) else {
            panic!("no {line:?} (in order) in the followed stream:\n{follow}");
        };
        rest = &rest[at + line.len()..];
    }

    let pop = tshark(&pop3_file, &["-d", "tcp.port==2210,pop", "-Y", "pop"]);
    for request in ["USER bob", "PASS secret", "STAT", "RETR 1", "QUIT"] {
        assert!(pop.contains(request), "no {request:?} in:\n{pop}");
    }

    // The message is dissected as a message (IMF), sent and retrieved.
    for (file, port) in [
        (&smtp_file, "tcp.port==2125,smtp"),
        (&pop3_file, "tcp.port==2210,pop"),
    ] {
        let subject = tshark(
            file,
            &["-d", port, "-Y", "imf", "-T", "fields", "-e", "imf.subject"],
        );
        assert_eq!(subject.trim(), "pcap test", "IMF in {file:?}");
    }

    // With validation on, Wireshark's checksum status is 0 bad, 1 good, 2
    // unverified (what it says when validation is off). Every checksum is
    // verified and good; and a copy with one byte changed shows the check
    // is not vacuous.
    let packets = |file: &std::path::Path, filter: &str| {
        let out = tshark(
            file,
            &[
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
                "-Y",
                filter,
            ],
        );
        out.lines().count()
    };
    let corrupted = dir.path().join("corrupted.pcapng");
    let mut bytes = std::fs::read(&smtp_file).unwrap();
    let at = bytes.windows(4).position(|w| w == b"EHLO").unwrap();
    bytes[at + 3] = b'X';
    std::fs::write(&corrupted, bytes).unwrap();
    for file in [&smtp_file, &pop3_file, &corrupted] {
        let all = packets(file, "tcp");
        assert!(all > 20, "{file:?} has {all} packets");
        let broken = usize::from(file == &corrupted);
        let bad = "tcp.checksum.status==0 || ip.checksum.status==0";
        assert_eq!(packets(file, bad), broken, "bad checksums in {file:?}");
        let unverified = "tcp.checksum.status==2 || ip.checksum.status==2";
        assert_eq!(packets(file, unverified), 0, "unverified in {file:?}");
        let good = "tcp.checksum.status==1 && ip.checksum.status==1";
        assert_eq!(
            packets(file, good),
            all - broken,
            "good checksums in {file:?}"
        );
    }
}

/// The playwright-core the browser test drives chromium with (npm, pinned):
/// the last release that runs on Node 18, Debian 12's `nodejs` (later ones
/// want Node 20); it drives Debian's current chromium.
const PLAYWRIGHT_CORE: &str = "1.61.1";

/// A folder holding `node_modules/playwright-core` at [`PLAYWRIGHT_CORE`]:
/// `$TMPDIR/mailnet-playwright`, installed there with npm when missing
/// (into a folder of its own first, then renamed, so a half-done install is
/// never used).
fn playwright_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("mailnet-playwright");
    let installed = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("node_modules/playwright-core/package.json"))
            .map(|p| p.contains(&format!("\"version\": \"{PLAYWRIGHT_CORE}\"")))
            .unwrap_or(false)
    };
    if installed(&dir) {
        return dir;
    }
    let fresh = std::env::temp_dir().join(format!("mailnet-playwright.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&fresh)
        .arg(format!("playwright-core@{PLAYWRIGHT_CORE}")));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&fresh, &dir).is_err() {
        // another run installed it meanwhile
        let _ = std::fs::remove_dir_all(&fresh);
    }
    assert!(
        installed(&dir),
        "npm did not install playwright-core@{PLAYWRIGHT_CORE} in {dir:?}"
    );
    dir
}

/// One HTTP/1.1 GET on loopback: the status and the body.
fn http_get(base: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = std::net::TcpStream::connect(&authority).expect("connect to the web server");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The dashboard in a real browser (tests/web/e2e.mjs): Debian's chromium
/// driven by playwright-core opens `mailnet up --web`, finds the servers,
/// clicks through to usr1@gmail.com's mailbox and a relayed message, sees
/// its text and its path exmail.qq.com → gmail.com, its tabs, a message
/// arriving live, the queue, sessions and runs pages; an HTML mail's
/// `<script>` and `onerror` never run (and its inline styles cause no
/// console error); no console error, no request leaves 127.0.0.1. Needs
/// chromium, node and npm (CI installs them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_dashboard_in_chromium() {
    use crate::support::send_mail;
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    if !have("/usr/bin/chromium", &["--version"])
        || !have("node", &["--version"])
        || !have("npm", &["--version"])
    {
        return;
    }
    let pw = tokio::task::spawn_blocking(playwright_dir).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailnet"))
        .args([
            "--quiet",
            "up",
            "--ephemeral",
            "--web",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _stop = Stop(child);
    // the boot table, up to `ready`: the web address and each server's SMTP port
    let mut table = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("ready") {
            break;
        }
        table.push(line);
    }
    let text = table.join("\n");
    let base = table
        .iter()
        .find_map(|l| l.strip_prefix("web: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `web: URL` line in:\n{text}"))
        .to_string();
    let smtp = |server: &str| -> std::net::SocketAddr {
        let port: u16 = table
            .iter()
            .find(|l| l.split_whitespace().next() == Some(server))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no SMTP port for {server} in:\n{text}"));
        ([127, 0, 0, 1], port).into()
    };

    let nonce = std::process::id();
    let subject = format!("Across the network {nonce}");
    let body = format!("This text crossed two servers ({nonce}).");
    let xss_subject = format!("HTML with a script {nonce}");
    let marker = format!("html-part-shown-{nonce}");
    send_mail(
        smtp("exmail.qq.com"),
        "usr1@mail.sustech.edu.cn",
        &["usr1@gmail.com"],
        &format!(
            "From: usr1@mail.sustech.edu.cn\r\nTo: usr1@gmail.com\r\nSubject: {subject}\r\n\r\n{body}\r\n"
        ),
    )
    .await;
    send_mail(
        smtp("gmail.com"),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        &format!(
            "From: usr1@gmail.com\r\nTo: bob@gmail.com\r\nSubject: {xss_subject}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<html><head><style>p {{ margin: 1em }}</style>\
             </head><body><p style=\"color: #1f5fa8\">{marker}</p><script>alert(1)</script>\
             <img src=\"x\" onerror=\"alert(2)\"></body></html>\r\n"
        ),
    )
    .await;
    // the API lists both (a long poll: no sleeping)
    for (mailbox, subject) in [
        ("usr1@gmail.com", &subject),
        ("bob@gmail.com", &xss_subject),
    ] {
        let (b, path) = (
            base.clone(),
            format!("/api/v1/wait?mailbox={mailbox}&count=1&timeout=20"),
        );
        let (status, listed) = tokio::task::spawn_blocking(move || http_get(&b, &path))
            .await
            .unwrap();
        assert_eq!(status, 200, "{mailbox}: {listed}");
        assert!(listed.contains(subject.as_str()), "{mailbox}: {listed}");
    }

    let script = format!("{}/tests/web/e2e.mjs", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .arg(&base)
            .args(["--subject", &subject, "--body", &body])
            .args(["--xss-subject", &xss_subject, "--xss-marker", &marker])
            .env("PW_DIR", &pw)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("no JSON result from e2e.mjs\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    let checks = result["checks"].as_array().cloned().unwrap_or_default();
    let failed: Vec<_> = checks.iter().filter(|c| c["ok"] != true).collect();
    assert!(
        failed.is_empty() && result["ok"] == true && out.status.success(),
        "failed checks: {failed:#?}\nall: {result:#}\nstderr:\n{stderr}"
    );
    for name in [
        "front", "mailbox", "message", "path", "tabs", "live", "pages", "xss", "sandbox", "clean",
    ] {
        assert!(
            checks.iter().any(|c| c["name"] == name && c["ok"] == true),
            "no passing {name:?} check: {result:#}"
        );
    }
    assert_eq!(result["dialogs"], serde_json::json!([]), "{result:#}");
}
