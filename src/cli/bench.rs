//! `mailnet bench`: measurements, never assertions. Each prints what it ran
//! and the figures; `benches/compare.sh` runs them beside the reference tools.

use mailnet::service::Service;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};

use mailnet::network::Network;
use mailnet::orchestrator::{RunningNetwork, UpOptions};
use mailnet::pop3::client::Pop3Client;
use mailnet::resolve::MailResolver;
use mailnet::smtp::client::SmtpClient;

/// `mailnet bench` arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// Process start until every listener accepts and the DNS answers.
    Boot {
        /// Also boot a generated network of this many servers.
        #[arg(long, default_value_t = 200)]
        servers: usize,
        /// Users per generated server.
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Runs of each; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// SMTP load: N messages of S octets over C concurrent sessions.
    Smtp {
        /// Any SMTP server; without it, an in-process mailnet server storing to Maildir.
        #[arg(long)]
        server: Option<SocketAddr>,
        /// Messages in all.
        #[arg(short = 'n', long, default_value_t = 20000)]
        messages: usize,
        /// Concurrent sessions.
        #[arg(short = 'c', long, default_value_t = 20)]
        concurrency: usize,
        /// Message size in octets.
        #[arg(short = 's', long, default_value_t = 1024)]
        size: usize,
        /// Reuse each connection for many messages (like smtp-source -d).
        #[arg(long)]
        reuse: bool,
        /// Envelope sender.
        #[arg(long, default_value = "usr1@gmail.com")]
        from: String,
        /// Envelope recipient.
        #[arg(long, default_value = "bob@gmail.com")]
        to: String,
    },
    /// Relay end to end: submit at exmail.qq.com for usr1@gmail.com, time until in the mailbox.
    Relay {
        /// Messages in all.
        #[arg(short = 'n', long, default_value_t = 5000)]
        messages: usize,
        /// Submitting sessions (each reuses its connection).
        #[arg(short = 'c', long, default_value_t = 20)]
        concurrency: usize,
        /// Send the next message only when the last one arrived: latency with an empty queue.
        #[arg(long)]
        one_at_a_time: bool,
    },
    /// POP3: log in to a large mailbox, RETR throughput.
    Pop3 {
        /// Messages in the RETR mailbox.
        #[arg(long, default_value_t = 10000)]
        messages: usize,
        /// Their size in octets.
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// Messages in the mailbox whose login is timed.
        #[arg(long, default_value_t = 100_000)]
        login_messages: usize,
    },
}

/// Runs a benchmark.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.what {
        BenchWhat::Boot {
            servers,
            users,
            runs,
        } => boot(*servers, *users, *runs).await,
        BenchWhat::Smtp {
            server,
            messages,
            concurrency,
            size,
            reuse,
            from,
            to,
        } => smtp(*server, *messages, *concurrency, *size, *reuse, from, to).await,
        BenchWhat::Pop3 {
            messages,
            size,
            login_messages,
        } => pop3(*messages, *size, *login_messages).await,
        BenchWhat::Relay {
            messages,
            one_at_a_time: true,
            ..
        } => relay_latency(*messages).await,
        BenchWhat::Relay {
            messages,
            concurrency,
            ..
        } => relay(*messages, *concurrency).await,
    }
}

/// A network file of `servers` servers with `users` users each, all ports 0.
pub fn generated_network(servers: usize, users: usize) -> String {
    let mut yaml = String::from("dns: 127.0.0.1:0\nservers:\n");
    for s in 0..servers {
        yaml.push_str(&format!(
            "  - name: mx{s}.bench.test\n    domains: [d{s}.bench.test]\n    smtp: {{ port: 0 }}\n    pop3: {{ port: 0 }}\n    users:\n"
        ));
        for u in 0..users {
            yaml.push_str(&format!(
                "      - {{ address: u{u}@d{s}.bench.test, password: p{u} }}\n"
            ));
        }
    }
    yaml
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn boot(servers: usize, users: usize, runs: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let generated = dir.path().join("generated.yaml");
    std::fs::write(&generated, generated_network(servers, users))?;
    let mut booted = 0;
    for (label, file) in [
        ("default network (6 servers)", None),
        (
            &*format!("generated network ({servers} servers x {users} users)"),
            Some(&generated),
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..runs {
            // Inside the bench's own temporary folder: the booted process
            // is killed, so it cannot remove a data folder of its own.
            booted += 1;
            let data = dir.path().join(format!("data-{booted}"));
            times.push(boot_once(&exe, file.map(|p| p.as_path()), &data).await?);
        }
        times.sort();
        println!(
            "boot {label}: median {:.1} ms (min {:.1}, max {:.1}, {runs} runs)",
            ms(times[runs / 2]),
            ms(times[0]),
            ms(times[runs - 1])
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts `mailnet up --ephemeral`, waits for its table, then until every port
/// accepts and the DNS answers an MX query; returns the time from spawn.
async fn boot_once(
    exe: &std::path::Path,
    file: Option<&std::path::Path>,
    data: &std::path::Path,
) -> anyhow::Result<Duration> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--quiet")
        .arg("up")
        .arg("--ephemeral")
        .arg("--data-dir")
        .arg(data);
    if let Some(f) = file {
        cmd.arg(f);
    }
    cmd.stdout(std::process::Stdio::piped()).kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot start mailnet up")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut ports = Vec::new();
    let mut dns: Option<SocketAddr> = None;
    let mut first_domain = None;
    while let Some(line) = lines.next_line().await? {
        if line.starts_with("ready") {
            break;
        }
        if let Some(rest) = line.split("fake DNS on ").nth(1) {
            dns = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 4 && cols[0] != "SERVER" {
            if let (Ok(smtp), Ok(pop3)) = (cols[2].parse::<u16>(), cols[3].parse::<u16>()) {
                ports.push(smtp);
                ports.push(pop3);
                first_domain.get_or_insert(cols[1].split(',').next().unwrap_or("").to_string());
            }
        }
    }
    let dns = dns.context("mailnet up printed no DNS address")?;
    for port in &ports {
        tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .with_context(|| format!("port {port} does not accept"))?;
    }
    let resolver = MailResolver::from_dns(dns);
    resolver
        .mx(first_domain.as_deref().unwrap_or("gmail.com"))
        .await?;
    let elapsed = start.elapsed();
    let _ = child.kill().await;
    Ok(elapsed)
}

async fn smtp(
    server: Option<SocketAddr>,
    messages: usize,
    concurrency: usize,
    size: usize,
    reuse: bool,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    let mut local = None;
    let target = match server {
        Some(addr) => addr,
        None => {
            let net = Network::default_network().with_ephemeral_ports();
            let running = RunningNetwork::start(net, UpOptions::default()).await?;
            let addr = running
                .server_for_domain("gmail.com")
                .context("no gmail.com")?
                .addr(Service::Smtp);
            local = Some(running);
            addr
        }
    };
    let mut body = format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: bench\r\n\r\n").into_bytes();
    while body.len() + 2 < size {
        let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
        let take = line.len().min(size - 2 - body.len()).max(1);
        body.extend_from_slice(&line.as_bytes()[line.len() - take..]);
    }
    body.extend_from_slice(b"\r\n");
    let body = std::sync::Arc::new(body);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (body, next, from, to) = (body.clone(), next.clone(), from.to_string(), to.to_string());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut client: Option<SmtpClient<tokio::net::TcpStream>> = None;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < messages {
                let t = Instant::now();
                if client.is_none() {
                    let (mut c, _) = SmtpClient::connect(target, Duration::from_secs(30)).await?;
                    c.command("EHLO bench.test").await?;
                    client = Some(c);
                }
                let c = client.as_mut().expect("connected above");
                let replies = c
                    .pipeline(&[
                        format!("MAIL FROM:<{from}>"),
                        format!("RCPT TO:<{to}>"),
                        "DATA".into(),
                    ])
                    .await?;
                if replies[2].code != 354 {
                    bail!(
                        "server refused: {} {}",
                        replies[2].code,
                        replies
                            .iter()
                            .map(|r| r.lines.join(" "))
                            .collect::<Vec<_>>()
                            .join(" / ")
                    );
                }
                let done = c.send_message(&body).await?;
                if done.code != 250 {
                    bail!("message refused: {} {}", done.code, done.lines.join(" "));
                }
                if !reuse {
                    let mut c = client.take().expect("connected above");
                    c.command("QUIT").await?;
                }
                latencies.push(t.elapsed());
            }
            if let Some(mut c) = client {
                let _ = c.command("QUIT").await;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = start.elapsed();
    all.sort();
    println!(
        "smtp {} -> {target}: {messages} messages of {size} octets, {concurrency} sessions, {}: {:.0} msgs/s, latency p50 {:.2} ms p99 {:.2} ms",
        if server.is_some() { "external server" } else { "mailnet (Maildir)" },
        if reuse { "connection reuse" } else { "a connection per message" },
        messages as f64 / elapsed.as_secs_f64(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
    );
    if let Some(running) = local {
        let stored = running
            .server_for_domain("gmail.com")
            .map(|s| s.host.store().count(to))
            .unwrap_or(0);
        println!("  stored in the mailbox: {stored}");
        running.stop().await;
    }
    Ok(())
}

async fn pop3(messages: usize, size: usize, login_messages: usize) -> anyhow::Result<()> {
    let net = Network::default_network().with_ephemeral_ports();
    let running = RunningNetwork::start(net, UpOptions::default()).await?;
    let gmail = running
        .server_for_domain("gmail.com")
        .context("no gmail.com")?
        .clone();
    let store = gmail.host.store().clone();
    let line = "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJ\r\n";
    let make = |size: usize| {
        let mut m = b"Subject: bench\r\n\r\n".to_vec();
        while m.len() < size {
            m.extend_from_slice(line.as_bytes());
        }
        m.truncate(size - 2);
        m.extend_from_slice(b"\r\n");
        m
    };
    let cases = [
        ("usr1@gmail.com", messages, size),
        ("hcy@gmail.com", 100, 10 * 1024 * 1024),
    ];
    for (user, count, size) in cases {
        let message = make(size);
        for _ in 0..count {
            store.deliver(user, &message)?;
        }
        // Into their Maildir files now, so the login below measures a
        // listing, not the making of the files.
        store.flush_journal(Duration::MAX)?;
        let password = gmail
            .host
            .config()
            .user(user)
            .context("user")?
            .password
            .clone();
        let (mut client, _) =
            Pop3Client::connect(gmail.addr(Service::Pop3), Duration::from_secs(60)).await?;
        client.command(&format!("USER {user}")).await?;
        client.command(&format!("PASS {password}")).await?;
        let start = Instant::now();
        let mut bytes = 0;
        for i in 1..=count {
            let (status, body) = client.multiline(&format!("RETR {i}")).await?;
            if !status.ok {
                bail!("RETR {i}: {}", status.line);
            }
            bytes += body.len();
        }
        let elapsed = start.elapsed().as_secs_f64();
        client.command("QUIT").await?;
        println!(
            "pop3 RETR {count} messages of {size} octets: {:.0} msgs/s, {:.0} MB/s",
            count as f64 / elapsed,
            bytes as f64 / elapsed / 1e6
        );
    }
    let user = "akc@gmail.com";
    let small = make(512);
    for _ in 0..login_messages {
        store.deliver(user, &small)?;
    }
    store.flush_journal(Duration::MAX)?;
    let (mut client, _) =
        Pop3Client::connect(gmail.addr(Service::Pop3), Duration::from_secs(60)).await?;
    client.command(&format!("USER {user}")).await?;
    let start = Instant::now();
    let status = client.command("PASS password4").await?;
    let first = start.elapsed();
    client.command("QUIT").await?;
    let (mut client, _) =
        Pop3Client::connect(gmail.addr(Service::Pop3), Duration::from_secs(60)).await?;
    client.command(&format!("USER {user}")).await?;
    let start = Instant::now();
    let second = client.command("PASS password4").await?;
    let again = start.elapsed();
    if !second.ok {
        bail!("second login refused: {}", second.line);
    }
    client.command("QUIT").await?;
    let start = Instant::now();
    let listed = store.messages(user)?.len();
    let listing = start.elapsed();
    println!(
        "pop3 login to {login_messages} messages: {:.1} ms first, {:.1} ms again ({}); the store lists {listed} in {:.1} ms",
        ms(first),
        ms(again),
        status.line,
        ms(listing)
    );
    running.stop().await;
    Ok(())
}

/// The default network on free ports: exmail.qq.com's SMTP address and gmail.com's store.
async fn relay_network() -> anyhow::Result<(RunningNetwork, SocketAddr, mailnet::store::Mailstore)>
{
    let net = Network::default_network().with_ephemeral_ports();
    let running = RunningNetwork::start(net, UpOptions::default()).await?;
    let qq = running
        .server("exmail.qq.com")
        .context("no exmail.qq.com")?
        .addr(Service::Smtp);
    let store = running
        .server("gmail.com")
        .context("no gmail.com")?
        .host
        .store()
        .clone();
    Ok((running, qq, store))
}

/// Submits `messages` at exmail.qq.com for usr1@gmail.com over `concurrency`
/// reused sessions and times each until it is in gmail.com's mailbox. The k-th
/// arrival is paired with the k-th accepted submission (the queue is FIFO).
async fn relay(messages: usize, concurrency: usize) -> anyhow::Result<()> {
    let (running, qq, store) = relay_network().await?;
    let to = "usr1@gmail.com";
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(messages)));

    // Watch arrivals: the store's change counter counts deliveries (nothing
    // else touches gmail.com's store here), so no listing per arrival.
    let watcher = {
        let mut changes = store.subscribe();
        tokio::spawn(async move {
            let mut arrivals = Vec::with_capacity(messages);
            while arrivals.len() < messages {
                if changes.changed().await.is_err() {
                    break;
                }
                let now = Instant::now();
                let count = *changes.borrow_and_update() as usize;
                while arrivals.len() < count.min(messages) {
                    arrivals.push(now);
                }
            }
            arrivals
        })
    };

    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, accepted) = (next.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let (mut c, _) = SmtpClient::connect(qq, Duration::from_secs(30)).await?;
            c.command("EHLO bench.test").await?;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < messages {
                let replies = c
                    .pipeline(&[
                        "MAIL FROM:<usr1@mail.sustech.edu.cn>".into(),
                        format!("RCPT TO:<{to}>"),
                        "DATA".into(),
                    ])
                    .await?;
                if replies[2].code != 354 {
                    bail!("refused: {:?}", replies);
                }
                let done = c
                    .send_message(b"Subject: relay bench\r\n\r\nhello\r\n")
                    .await?;
                if done.code != 250 {
                    bail!("refused: {} {}", done.code, done.lines.join(" "));
                }
                accepted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Instant::now());
            }
            let _ = c.command("QUIT").await;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let arrivals = tokio::time::timeout(Duration::from_secs(300), watcher)
        .await
        .context("not every message arrived")??;
    let elapsed = arrivals
        .last()
        .map(|t| t.duration_since(start))
        .unwrap_or_default();
    let mut submitted = accepted.lock().unwrap_or_else(|e| e.into_inner()).clone();
    submitted.sort();
    let mut latencies: Vec<Duration> = submitted
        .iter()
        .zip(&arrivals)
        .map(|(s, a)| a.saturating_duration_since(*s))
        .collect();
    latencies.sort();
    println!(
        "relay exmail.qq.com -> gmail.com: {messages} messages, {concurrency} submitting sessions: {:.0} msgs/s end to end, delivery latency p50 {:.2} ms p99 {:.2} ms",
        messages as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    running.stop().await;
    Ok(())
}

/// One message at a time, each sent only after the previous one arrived:
/// the delivery latency of an idle relay (queue wake-up, DNS, SMTP, store).
async fn relay_latency(messages: usize) -> anyhow::Result<()> {
    let (running, qq, store) = relay_network().await?;
    let mut changes = store.subscribe();
    let (mut c, _) = SmtpClient::connect(qq, Duration::from_secs(30)).await?;
    c.command("EHLO bench.test").await?;
    let mut latencies = Vec::with_capacity(messages);
    for _ in 0..messages {
        changes.borrow_and_update();
        c.pipeline(&[
            "MAIL FROM:<usr1@mail.sustech.edu.cn>".into(),
            "RCPT TO:<usr1@gmail.com>".into(),
            "DATA".into(),
        ])
        .await?;
        let done = c
            .send_message(b"Subject: relay latency\r\n\r\nhello\r\n")
            .await?;
        let accepted = Instant::now();
        if done.code != 250 {
            bail!("refused: {} {}", done.code, done.lines.join(" "));
        }
        tokio::time::timeout(Duration::from_secs(30), changes.changed())
            .await
            .context("a message never arrived")??;
        latencies.push(accepted.elapsed());
    }
    let _ = c.command("QUIT").await;
    latencies.sort();
    println!(
        "relay latency, one message at a time ({messages}): from the 250 at exmail.qq.com to stored at gmail.com p50 {:.2} ms p99 {:.2} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    running.stop().await;
    Ok(())
}
