//! `mailnet hub` and `mailnet up --join` as processes on loopback: a class
//! of networks registering, finding each other, refusing each other's names,
//! leaving on stop; and the one-line errors. (Across real hosts, in network
//! namespaces: `interop::hub_peer_mailing_across_namespaces`.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mailnet::resolve::MailResolver;

const BIN: &str = env!("CARGO_BIN_EXE_mailnet");
const DEADLINE: Duration = Duration::from_secs(15);

/// A mailnet process whose stdout is collected line by line.
struct Proc {
    child: Child,
    /// Lines so far, and a signal for each new one (or the end of output).
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.0.lock().unwrap().push(line);
                    lines.1.notify_all();
                }
                lines.1.notify_all();
            });
        }
        Proc { child, lines }
    }

    /// Waits for a line `wanted` accepts, failing with everything printed.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        let (lines, changed) = &*self.lines;
        let mut seen = lines.lock().unwrap();
        loop {
            if let Some(line) = seen.iter().find(|l| wanted(l)) {
                return line.clone();
            }
            let now = Instant::now();
            if now > end {
                drop(seen);
                panic!(
                    "no line {what} within {DEADLINE:?}; printed:\n{}",
                    self.text()
                );
            }
            // Woken by each new line; the short bound notices an exit.
            let wait = (end - now).min(Duration::from_millis(100));
            seen = changed.wait_timeout(seen, wait).unwrap().0;
            if self.child.try_wait().unwrap().is_some() && !seen.iter().any(|l| wanted(l)) {
                drop(seen);
                // Output may still be draining: one last look.
                std::thread::yield_now();
                let seen = lines.lock().unwrap();
                if let Some(line) = seen.iter().find(|l| wanted(l)) {
                    return line.clone();
                }
                drop(seen);
                panic!("exited without a line {what}; printed:\n{}", self.text());
            }
        }
    }

    /// The fake DNS address `up`'s boot table gives.
    fn dns(&mut self) -> SocketAddr {
        self.wait_for("the fake DNS", |l| l.contains("fake DNS on"))
            .split_whitespace()
            .find_map(|w| w.trim_end_matches(';').parse::<SocketAddr>().ok())
            .expect("the fake DNS's address")
    }

    fn text(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "still running 5 s after SIGTERM");
            std::thread::yield_now();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a hub on a free port; it and its address.
fn hub(dir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let key = dir.join("class.key");
    let mut args = vec![
        "hub",
        "--listen",
        "127.0.0.1:0",
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut hub = Proc::start(&args);
    let first = hub.wait_for("answering", |l| l.contains("answering DNS on"));
    let addr = first
        .split_whitespace()
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .expect("the hub's address");
    hub.wait_for("ready", |l| l.starts_with("ready"));
    (hub, addr)
}

fn net_file(dir: &Path, domain: &str, user: &str) -> PathBuf {
    let path = dir.join(format!("{domain}.yaml"));
    std::fs::write(
        &path,
        format!("dns: 127.0.0.1:0\nservers:\n  - name: mail.{domain}\n    domains: [{domain}]\n    mx: mx.{domain}\n    smtp: {{ host: smtp.{domain}, port: 0 }}\n    pop3: {{ host: pop.{domain}, port: 0 }}\n    users:\n      - {{ address: {user}, password: pw }}\n    policy: {{ retry_initial: 1s }}\n"),
    )
    .unwrap();
    path
}

fn join(file: &Path, hub: SocketAddr, key: &Path, extra: &[&str]) -> Proc {
    let hub = hub.to_string();
    let mut args = vec![
        "up",
        file.to_str().unwrap(),
        "--join",
        hub.as_str(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Proc::start(&args)
}

/// `up FILE --join HUB --key KEY EXTRA…` run to its end.
fn join_output(file: &Path, hub: &str, key: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["up", file.to_str().unwrap(), "--join", hub])
        .args(["--key", key.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_class_on_one_machine_registers_mails_across_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let zone_file = dir.path().join("class.zone");
    let (mut hub_proc, hub_addr) = hub(dir.path(), &["--zone-file", zone_file.to_str().unwrap()]);
    let key = dir.path().join("class.key");
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("key \"class\" {") && text.contains("algorithm hmac-sha256;"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private");
    }
    let mut alice = join(
        &net_file(dir.path(), "alice.test", "a1@alice.test"),
        hub_addr,
        &key,
        &[],
    );
    alice.wait_for("joined", |l| {
        l.starts_with("joined hub") && l.contains("alice.test registered")
    });
    let mut bob = join(
        &net_file(dir.path(), "bob.test", "b1@bob.test"),
        hub_addr,
        &key,
        &[],
    );
    bob.wait_for("joined", |l| l.starts_with("joined hub"));
    hub_proc.wait_for("who registered bob", |l| {
        l.contains("registered bob.test") && l.contains("MX mx.bob.test")
    });

    // Relays and agents find bob through the hub, at the port bob bound.
    let resolver = MailResolver::from_dns(hub_addr);
    let targets = runtime()
        .block_on(resolver.relay_targets("bob.test"))
        .unwrap();
    assert_eq!(targets[0].0, "mx.bob.test");
    assert!(
        bob.text().contains(&format!(" {} ", targets[0].1.port())),
        "{}",
        bob.text()
    );

    // Alice's own fake DNS answers for her zone and asks the hub the rest,
    // so agents on her machine find bob with the default --dns too.
    let alice_dns = alice.dns();
    let through_alice = runtime()
        .block_on(MailResolver::from_dns(alice_dns).relay_targets("bob.test"))
        .unwrap();
    assert_eq!(through_alice, targets);

    let hub_arg = hub_addr.to_string();
    let sent = Command::new(BIN)
        .args([
            "send",
            "--from",
            "a1@alice.test",
            "--to",
            "b1@bob.test",
            "--subject",
            "across",
            "--body",
            "hi",
        ])
        .args(["--dns", &hub_arg])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let end = Instant::now() + DEADLINE;
    loop {
        let fetched = Command::new(BIN)
            .args([
                "fetch",
                "--user",
                "b1@bob.test",
                "--password",
                "pw",
                "--dns",
                &hub_arg,
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&fetched.stdout).contains("across") {
            break;
        }
        assert!(Instant::now() < end, "never relayed: {}", alice.text());
        std::thread::yield_now();
    }

    // A clean stop takes bob's records off the hub; alice's stay.
    bob.terminate();
    assert!(
        bob.text().contains("records removed from hub"),
        "{}",
        bob.text()
    );
    hub_proc.wait_for("bob removed", |l| l.contains("removed bob.test"));
    let rt = runtime();
    assert!(rt.block_on(resolver.mx("bob.test")).is_err());
    assert_eq!(
        rt.block_on(resolver.mx("alice.test")).unwrap(),
        vec!["mx.alice.test".to_string()]
    );

    // The zone file keeps alice across a restart of the hub.
    hub_proc.terminate();
    let (mut again, _) = hub(dir.path(), &["--zone-file", zone_file.to_str().unwrap()]);
    assert!(
        again.text().contains("1 zone there now: alice.test"),
        "{}",
        again.text()
    );
    again.terminate();
    alice.terminate();
}

#[test]
fn a_name_another_machine_holds_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, hub_addr) = hub(dir.path(), &[]);
    let key = dir.path().join("class.key");
    let file = net_file(dir.path(), "alice.test", "a1@alice.test");
    let mut first = join(&file, hub_addr, &key, &["--advertise", "127.0.0.1"]);
    first.wait_for("joined", |l| l.starts_with("joined hub"));
    // Another machine (another address) with the same domain.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let file2 = net_file(&other, "alice.test", "a1@alice.test");
    let out = join_output(
        &file2,
        &hub_addr.to_string(),
        &key,
        &["--advertise", "127.0.0.9"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    crate::support::assert_one_line_error(
        &out,
        &[
            "alice.test is already registered at hub",
            "127.0.0.1",
            "--force",
        ],
    );
    assert!(!stderr.contains("panick"), "{stderr}");
    let mut forced = join(
        &file2,
        hub_addr,
        &key,
        &["--advertise", "127.0.0.9", "--force"],
    );
    forced.wait_for("joined", |l| l.starts_with("joined hub"));
    let resolver = MailResolver::from_dns(hub_addr);
    let addrs = runtime()
        .block_on(resolver.addresses("mx.alice.test"))
        .unwrap();
    assert_eq!(
        addrs,
        vec!["127.0.0.9".parse::<std::net::IpAddr>().unwrap()]
    );
}

#[test]
fn hub_trouble_is_one_line_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let file = net_file(dir.path(), "alice.test", "a1@alice.test");
    let key = dir.path().join("class.key");
    std::fs::write(&key, fake_dns::hub::TsigKey::generate("class").to_bind()).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    let started = Instant::now();
    let out = join_output(&file, &nobody, &key, &[]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    crate::support::assert_one_line_error(
        &out,
        &[&format!("hub {nobody}"), "is `mailnet hub` running there?"],
    );

    // A key file that is not one: where and what.
    std::fs::write(
        &key,
        "key \"class\" {\n\talgorithm hmac-md5;\n\tsecret \"AAAA\";\n};\n",
    )
    .unwrap();
    let out = join_output(&file, &nobody, &key, &[]);
    crate::support::assert_one_line_error(
        &out,
        &["class.key:2:12: algorithm `hmac-md5` is not supported"],
    );

    // --key without --join, and a hub that is not an address.
    let out = Command::new(BIN)
        .args(["up", "--join", "hub.example", "--key", "k"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not IP or IP:PORT"));
}

/// A machine the submission server does not trust (not its own address,
/// no login) still reaches a user of another domain: the recipient's own
/// mail exchanger takes mail for its users from anyone.
#[test]
fn send_goes_to_the_mx_when_the_submission_server_will_not_relay() {
    let dir = tempfile::tempdir().unwrap();
    // Served on 127.0.0.2; the agent connects from 127.0.0.1, which this
    // network does not trust.
    let file = dir.path().join("net.yaml");
    std::fs::write(
        &file,
        "dns: 127.0.0.2:0\nbind: 127.0.0.2\nservers:\n  - name: mail.alice.test\n    domains: [alice.test]\n    smtp: { port: 0 }\n    pop3: { port: 0 }\n    users:\n      - { address: a1@alice.test, password: pw }\n    policy: { mynetworks: [] }\n  - name: mail.bob.test\n    domains: [bob.test]\n    smtp: { port: 0 }\n    pop3: { port: 0 }\n    users:\n      - { address: b1@bob.test, password: pw }\n    policy: { mynetworks: [] }\n",
    )
    .unwrap();
    let mut up = Proc::start(&["up", file.to_str().unwrap()]);
    let dns = up.dns();
    up.wait_for("ready", |l| l.starts_with("ready"));
    let sent = Command::new(BIN)
        .args([
            "send",
            "--from",
            "a1@alice.test",
            "--to",
            "b1@bob.test",
            "--subject",
            "direct",
            "--body",
            "x",
        ])
        .args(["--dns", &dns.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        stdout.contains("relays only for its own machines"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sent to b1@bob.test via 127.0.0.2:"),
        "{stdout}"
    );
    let fetched = Command::new(BIN)
        .args([
            "fetch",
            "--user",
            "b1@bob.test",
            "--password",
            "pw",
            "--dns",
            &dns.to_string(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&fetched.stdout).contains("direct"));
    // With a login the submission server relays, and no detour is taken.
    let sent = Command::new(BIN)
        .args([
            "send",
            "--from",
            "a1@alice.test",
            "--to",
            "b1@bob.test",
            "--subject",
            "s",
            "--body",
            "x",
        ])
        .args(["--password", "pw", "--dns", &dns.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success() && !stdout.contains("note:"),
        "{stdout}"
    );
    up.terminate();
}
