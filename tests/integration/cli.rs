//! The `mailnet` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mailnet");

/// Reads `mailnet up`'s standard output to its `ready` line; the lines
/// before it (the boot table).
fn boot_table(child: &mut std::process::Child) -> Vec<String> {
    let mut table = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("ready") {
            break;
        }
        table.push(line);
    }
    table
}

/// The SMTP port the boot table gives `server` (0 when it names none).
fn smtp_port(table: &[String], server: &str) -> u16 {
    table
        .iter()
        .find(|l| l.split_whitespace().next() == Some(server))
        .map_or(0, |l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_port_in_use_is_one_line_naming_server_and_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "net.yaml", &format!("dns: 127.0.0.1:0\nservers:\n  - name: a.test\n    domains: [a.test]\n    smtp: {{ port: {port} }}\n    pop3: {{ port: 0 }}\n"));
    let out = Command::new(BIN)
        .args(["up"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(stderr.trim(), format!("mailnet: server a.test: SMTP: 127.0.0.1:{port} is already in use (another mailnet, or another program, holds it)"));
}

#[test]
fn check_reports_file_line_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.yaml", "servers:\n  - name: a.test\n    domains: [a.test]\n    smtp: { port: 0 }\n    pop3: { port: 0 }\n");
    let bad = write(&dir, "bad.yaml", "servers:\n  - name: a.test\n    domains: [a.test]\n    smtp: { port: 25 }\n    pop3: { port: 25 }\n");
    let out = Command::new(BIN)
        .arg("check")
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("good.yaml: ok, network of 1 server"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "{}:5:19: port 25 is used twice (POP3 of `a.test` and SMTP of `a.test`)",
            bad.display()
        )
    );
}

/// Values that once panicked `check` and `up` (`1e300` seconds), or passed
/// `check` and then broke the running network (a session cap beyond what
/// tokio allows, a retry wait beyond what the clock holds): each is now one
/// line naming its file, line and column, from both commands.
#[test]
fn out_of_range_policy_values_are_one_line_with_their_place_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("idle_timeout: 1e300", 21, "`1e300` is too long: at most 1d"),
        (
            "max_sessions: 99999999999999999999",
            21,
            "`99999999999999999999` is too large: at most 100000",
        ),
        (
            "retry_initial: 1e19s",
            22,
            "`1e19s` is too long: at most 1d",
        ),
    ];
    for (i, (setting, column, message)) in cases.into_iter().enumerate() {
        let file = write(
            &dir,
            &format!("net{i}.yaml"),
            &format!("dns: 127.0.0.1:0\nservers:\n  - name: a.test\n    domains: [a.test]\n    smtp: {{ port: 0 }}\n    pop3: {{ port: 0 }}\n    policy:\n      {setting}\n"),
        );
        let expected = format!("{}:8:{column}: {message}", file.display());
        // Under `timeout`, so a network that wrongly starts fails the test
        // instead of hanging it.
        let commands: [(&[&str], &str); 2] =
            [(&["check"], ""), (&["up", "--ephemeral"], "mailnet: ")];
        for (command, prefix) in commands {
            let out = Command::new("timeout")
                .arg("20")
                .arg(BIN)
                .args(command)
                .arg(&file)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{command:?} {setting}: {stderr}"
            );
            assert_eq!(
                stderr.trim_end(),
                format!("{prefix}{expected}"),
                "{command:?}"
            );
        }
    }
}

#[test]
fn up_prints_its_table_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--quiet", "up", "--ephemeral", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let table = boot_table(&mut child);
    let text = table.join("\n");
    assert!(text.contains("fake DNS on 127.0.0.1:"), "{text}");
    assert!(
        text.contains("exmail.qq.com    mail.sustech.edu.cn"),
        "{text}"
    );
    assert!(text.contains("usr1@gmail.com"), "{text}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // --data-dir is the user's: it stays after the network stops.
    assert!(dir.path().exists());
}

#[test]
fn only_runs_one_server_without_dns() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--quiet",
            "up",
            "--ephemeral",
            "--only",
            "gmail.com",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let table = boot_table(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    let text = table.join("\n");
    assert!(text.contains("no DNS in this process (--only)"), "{text}");
    assert!(text.contains("gmail.com"), "{text}");
    assert!(!text.contains("exmail.qq.com"), "{text}");
}

#[test]
fn only_an_unknown_server_is_refused() {
    let out = Command::new(BIN)
        .args(["up", "--ephemeral", "--only", "nope.test"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--only nope.test: the network has no such server"));
}

#[test]
fn skip_publishes_a_server_without_running_it() {
    let dir = tempfile::tempdir().unwrap();
    // b.test's ports are never bound (it is skipped), so fixed ones are safe here.
    let file = write(&dir, "net.yaml", "dns: 127.0.0.1:0\nservers:\n  - name: a.test\n    domains: [a.test]\n    smtp: { port: 0 }\n    pop3: { port: 0 }\n  - name: b.test\n    domains: [b.test]\n    smtp: { port: 2525 }\n    pop3: { port: 2110 }\n");
    let mut child = Command::new(BIN)
        .args(["--quiet", "up"])
        .arg(&file)
        .args(["--skip", "B.test", "--data-dir"])
        .arg(dir.path().join("mail"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let table = boot_table(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    let text = table.join("\n");
    assert!(text.contains("with 1 server;"), "{text}");
    assert!(
        text.contains(
            "skipped: b.test 127.0.0.1 SMTP 2525 POP3 2110 (published in the DNS, not run here)"
        ),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("b.test")), "{text}");
}

#[test]
fn skip_refuses_unknown_servers_and_ports_it_cannot_publish() {
    let out = Command::new(BIN)
        .args(["up", "--skip", "nope.test"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--skip nope.test: the network has no such server"));
    let out = Command::new(BIN)
        .args(["up", "--ephemeral", "--skip", "gmail.com"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--skip gmail.com: its SMTP and POP3 ports must be fixed"));
    let out = Command::new(BIN)
        .args(["up", "--only", "gmail.com", "--skip", "qq.com"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[test]
fn the_course_config_pair_boots_one_server_like_std_server_py() {
    let dir = tempfile::tempdir().unwrap();
    let net = mailnet::network::Network::default_network();
    let ports = mailnet::network::cs305::configured_ports(&net);
    mailnet::network::cs305::write(&net, &ports, dir.path()).unwrap();
    // --ephemeral: the file's fixed ports are replaced by free ones, so tests run in parallel.
    let mut child = Command::new(BIN)
        .args(["--quiet", "up", "--ephemeral"])
        .arg(dir.path().join("data/config.toml"))
        .args(["--only", "gmail.com", "--data-dir"])
        .arg(dir.path().join("mail"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let table = boot_table(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    let text = table.join("\n");
    assert!(text.contains("with 1 server;"), "{text}");
    assert!(
        text.contains("gmail.com") && text.contains("usr1@gmail.com"),
        "{text}"
    );
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// 300 connections to a process with 256 descriptors: the session caps
/// (derived from the limit) answer the excess busy, the process does not
/// spin or flood its log, and the other servers still answer.
#[test]
fn three_hundred_connections_with_256_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {BIN} up --ephemeral --data-dir {}",
            dir.path().display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let table = boot_table(&mut child);
    let (gmail, qq) = (smtp_port(&table, "gmail.com"), smtp_port(&table, "qq.com"));
    assert!(gmail != 0 && qq != 0, "the table named the SMTP ports");
    let timeout = Some(std::time::Duration::from_secs(10));
    let held: Vec<BufReader<std::net::TcpStream>> = (0..300)
        .map(|_| {
            let stream = std::net::TcpStream::connect(("127.0.0.1", gmail)).unwrap();
            stream.set_read_timeout(timeout).unwrap();
            BufReader::new(stream)
        })
        .collect();
    let ticks = cpu_ticks(child.id());
    let window = std::time::Instant::now();
    // Every connection is answered: a greeting while the cap allows, the
    // busy line after.
    let mut greeted = Vec::new();
    let mut busy = 0;
    for mut conn in held {
        let mut answer = String::new();
        conn.read_line(&mut answer).unwrap();
        if answer.starts_with("220") {
            greeted.push(conn);
        } else {
            assert!(answer.starts_with("421 4.7.0"), "{answer}");
            busy += 1;
        }
    }
    assert!(
        !greeted.is_empty() && busy > 200,
        "{} greeted, {busy} busy",
        greeted.len()
    );
    // Another server of the process answers while gmail.com is full.
    let other = std::net::TcpStream::connect(("127.0.0.1", qq)).unwrap();
    other.set_read_timeout(timeout).unwrap();
    let mut greeting = String::new();
    BufReader::new(other).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220"), "{greeting}");
    // A greeted client that says nothing hears nothing for a second; over
    // that second the process must be idle, not spinning.
    greeted[0]
        .get_ref()
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let mut nothing = String::new();
    let quiet = greeted[0].read_line(&mut nothing);
    assert!(quiet.is_err(), "unexpected {nothing:?}");
    let used = (cpu_ticks(child.id()) - ticks) as f64 / 100.0;
    let share = used / window.elapsed().as_secs_f64();
    assert!(
        share < 0.3,
        "{:.0}% of a core with 300 connections",
        share * 100.0
    );
    drop(greeted);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.len() < 100_000,
        "{} bytes of log:\n{}",
        stderr.len(),
        &stderr[..stderr.len().min(2000)]
    );
}

/// With nothing running, the agent fails in well under 2 s with one line
/// that says what was tried and what to do.
#[test]
fn agents_fail_fast_when_nothing_runs() {
    for args in [
        &[
            "send",
            "--dns",
            "127.0.0.1:9",
            "--from",
            "usr1@gmail.com",
            "--to",
            "bob@gmail.com",
            "--body",
            "x",
        ][..],
        &[
            "fetch",
            "--dns",
            "127.0.0.1:9",
            "--user",
            "usr1@gmail.com",
            "--password",
            "p",
        ],
        &[
            "send",
            "--server",
            "127.0.0.1:1",
            "--from",
            "usr1@gmail.com",
            "--to",
            "bob@beta.test",
            "--body",
            "x",
        ],
    ] {
        let started = std::time::Instant::now();
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            took < std::time::Duration::from_secs(2),
            "{args:?} took {took:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("is `mailnet up` running?"), "{stderr}");
        assert!(
            stderr.contains("127.0.0.1:9") || stderr.contains("127.0.0.1:1"),
            "{stderr}"
        );
    }
}

/// Logs written to a file carry no colour codes.
#[test]
fn logs_in_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["up", "--ephemeral", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    boot_table(&mut child);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(!text.is_empty(), "up logged something");
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// `check … | head -1` ends quietly: no panic on the closed pipe.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{BIN} check {dir}/scenarios {dir}/scenarios | head -1",
            dir = env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// `up --accept-any` is a catch-all, and `up` logs one line per message:
/// who to whom, and what became of it.
#[test]
fn up_logs_each_message_and_accept_any_takes_any_address() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["up", "--ephemeral", "--accept-any", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let port = smtp_port(&boot_table(&mut child), "gmail.com");
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut replies = Vec::new();
    let mut read = |reader: &mut BufReader<std::net::TcpStream>| {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        replies.push(line);
    };
    read(&mut reader);
    for command in [
        "HELO t\r\n",
        "MAIL FROM:<robot@gmail.com>\r\n",
        "RCPT TO:<anybody@gmail.com>\r\n",
        "DATA\r\n",
        "Subject: catch-all\r\n\r\nx\r\n.\r\n",
    ] {
        writer.write_all(command.as_bytes()).unwrap();
        read(&mut reader);
    }
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    // The line is logged before the 250 is sent.
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("gmail.com: robot@gmail.com → anybody@gmail.com: delivered (id "),
        "{text}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let stored = std::fs::read_dir(dir.path().join("data/gmail.com/mail/anybody@gmail.com/new"))
        .unwrap()
        .count();
    assert_eq!(stored, 1);
}

/// `bench boot` leaves nothing behind in the temporary folder.
#[test]
fn bench_boot_cleans_up_after_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "bench",
            "boot",
            "--runs",
            "1",
            "--servers",
            "2",
            "--users",
            "1",
        ])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Every subcommand ends quietly when its reader has gone: `test` (which
/// runs networks, so SIGPIPE stays ignored there) into a pipe whose reading
/// end is closed before mailnet starts is killed by SIGPIPE, as `head`'s
/// writers are, and never panics.
#[test]
fn a_closed_pipe_ends_any_subcommand_by_sigpipe_not_a_panic() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::ExitStatusExt;
    let mut fds = [0; 2];
    // SAFETY: two descriptors for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just opened both, and nothing else owns them.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let out = Command::new(BIN)
        .arg("test")
        .arg(format!("{}/scenarios", env!("CARGO_MANIFEST_DIR")))
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}

/// The tokio worker threads of process `pid`.
fn workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.trim() == "tokio-rt-worker")
        .count()
}

#[test]
fn up_runs_the_worker_threads_asked_for_else_one_fewer_than_the_cpus() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    for (args, want) in [
        (&["--threads", "3"][..], 3),
        (&[][..], cpus.saturating_sub(1).max(1)),
    ] {
        let data = tempfile::tempdir().unwrap();
        let up = crate::process::Up::start(data.path(), args);
        assert_eq!(workers(up.pid()), want, "{args:?}");
        drop(up);
    }
    let out = Command::new(BIN)
        .args(["up", "--threads", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}
