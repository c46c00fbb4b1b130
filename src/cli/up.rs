//! `mailnet up` and `mailnet dns`.

use mailnet::service::Service;
use std::fmt::Write as _;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use mailnet::network::Network;
use mailnet::orchestrator::{RunningNetwork, UpOptions};

/// Loads the file named, or the built-in network.
pub fn load_network(file: Option<&std::path::Path>) -> anyhow::Result<Network> {
    Ok(match file {
        Some(path) => Network::load(path)?,
        None => Network::default_network(),
    })
}

/// The table `up` prints: one row a server.
pub fn table(running: &RunningNetwork) -> String {
    let mut out = String::new();
    let dns = match running.dns {
        Some(addr) => format!(
            "fake DNS on {addr} (try: dig @{} -p {} {} MX)",
            addr.ip(),
            addr.port(),
            running.network.servers[0].domains[0]
        ),
        None => "no DNS in this process (--only)".to_string(),
    };
    let _ = writeln!(
        out,
        "mailnet: network {} with {}; {dns}",
        running.network.source,
        mailnet::text::count(running.servers.len() as u64, "server")
    );
    let _ = writeln!(
        out,
        "{:<16} {:<28} {:>6} {:>6} {:>6} {:>6} {:>6}  USERS",
        "SERVER", "MAIL DOMAINS", "SMTP", "POP3", "SMTPS", "POP3S", "SUBMIT"
    );
    for server in &running.servers {
        let config = server.host.config();
        let users: Vec<&str> = config.users.iter().map(|u| u.address.as_str()).collect();
        let _ = writeln!(
            out,
            "{:<16} {:<28} {:>6} {:>6} {:>6} {:>6} {:>6}  {}",
            config.name,
            config.domains.join(","),
            server.addr(Service::Smtp).port(),
            server.addr(Service::Pop3).port(),
            server.addr(Service::Smtps).port(),
            server.addr(Service::Pop3s).port(),
            match server.addr(Service::Submission).port() {
                0 => "-".to_string(),
                port => port.to_string(),
            },
            users.join(" ")
        );
    }
    let own: Vec<String> = running
        .servers
        .iter()
        .filter(|s| s.host.config().bind.is_some())
        .map(|s| format!("{} {}", s.host.config().name, s.addr(Service::Smtp).ip()))
        .collect();
    if !own.is_empty() {
        let _ = writeln!(out, "addresses: {}", own.join(", "));
    }
    // Servers published but not run here (--skip): where another program
    // must listen for the others to reach it. (With --only there is no DNS,
    // and the servers not run here are simply elsewhere.)
    if running.dns.is_some() {
        let ports: Vec<_> = running.network.servers.iter().map(|s| s.ports).collect();
        let facts = running.network.facts(&ports);
        for host in facts
            .hosts
            .iter()
            .filter(|h| running.server(&h.name).is_none())
        {
            let ips: Vec<String> = host.addresses.iter().map(|ip| ip.to_string()).collect();
            let _ = writeln!(
                out,
                "skipped: {} {} SMTP {} POP3 {} (published in the DNS, not run here)",
                host.name,
                ips.join(","),
                host.smtp_port,
                host.pop3_port
            );
        }
    }
    if let Some(ca) = &running.ca_cert {
        let _ = writeln!(
            out,
            "TLS: STARTTLS and STLS offered; certificates from the CA {}",
            ca.display()
        );
    }
    let faults = running.faults.list().len();
    let _ = writeln!(
        out,
        "faults: {} in force; seed {} (`--seed {}` repeats their random choices)",
        if faults == 0 {
            "none".to_string()
        } else {
            faults.to_string()
        },
        running.faults.seed(),
        running.faults.seed()
    );
    let _ = writeln!(out, "mail data: {}", running.data_dir.display());
    out
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when first polled, so a signal sent right after `ready` is seen.
pub fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs `mailnet up` until a stop signal.
pub async fn up(args: &super::UpArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut network = load_network(args.file.as_deref())?;
    tracing::debug!(elapsed = ?started.elapsed(), "network file read and checked");
    if args.ephemeral {
        network = network.with_ephemeral_ports();
    }
    if args.standard_ports {
        network = network.with_standard_ports()?;
    }
    if let Some(listen) = args.dns_listen {
        network.dns = listen;
    }
    for server in &mut network.servers {
        server.policy.strict |= args.strict;
        server.policy.accept_any |= args.accept_any;
    }
    // A skipped server is published at the ports the file gives; "any free
    // port" cannot be published for a program mailnet does not start.
    for name in &args.skip {
        if let Some(server) = network
            .servers
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
        {
            // Implicit-TLS ports left at 0 are simply not published.
            if server.port(Service::Smtp) == 0 || server.port(Service::Pop3) == 0 {
                anyhow::bail!(
                    "--skip {name}: its SMTP and POP3 ports must be fixed (not 0, not --ephemeral) to be published for another program"
                );
            }
        }
    }
    // Joining a hub: read the key first (a bad file is reported before
    // anything binds), then serve where the hub's machines can reach us.
    let key = match &args.key {
        Some(path) => Some(fake_dns::hub::TsigKey::load(path)?),
        None => None,
    };
    let (mut bind, mut advertise) = (args.bind, args.advertise);
    if let Some(hub) = args.join {
        let toward = mailnet::join::address_toward(hub)
            .with_context(|| format!("hub {hub}: no route to it from this machine"))?;
        advertise = advertise
            .or(bind.filter(|ip| !ip.is_unspecified()))
            .or(Some(toward));
        if bind.is_none() && network.bind.is_loopback() && !toward.is_loopback() {
            // Loopback would hide the servers from every other machine.
            bind = Some(toward);
        }
    }
    let options = UpOptions {
        only: args.only.clone(),
        skip: args.skip.clone(),
        dns: args.dns.or(args.join),
        bind,
        advertise,
        data_dir: args.data_dir.clone(),
        live_transcripts: args.transcripts,
        fsync: args.fsync,
        ca_dir: None,
        recorder: None,
        seed: args.seed,
        frozen_clock: false,
    };
    let mut options = options;
    // Bound before the network boots: a port in use stops nothing half-started.
    let web = match args.web {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| web_bind_error(addr, e))?,
        ),
        None => None,
    };
    if web.is_some() || args.pcap.is_some() {
        let recorder = mailnet::capture::Recorder::new();
        if let Some(dir) = &args.pcap {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--pcap {}: cannot create the folder", dir.display()))?;
            let dir = dir.clone();
            recorder.on_close(move |session| {
                let path = dir.join(format!("{}.pcapng", session.id));
                // Whole or not at all: a reader never finds half a file.
                let part = dir.join(format!(".{}.pcapng.part", session.id));
                let file = mailnet::capture::pcap::to_pcapng(&session.capture);
                let written =
                    std::fs::write(&part, file).and_then(|()| std::fs::rename(&part, &path));
                if let Err(error) = written {
                    tracing::warn!(path = %path.display(), %error, "cannot write a session's pcap");
                }
            });
        }
        options.recorder = Some(recorder);
    }
    let recorder = options.recorder.clone();
    let stop = stop_signal();
    let running = RunningNetwork::start(network, options).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "every listener bound and serving");
    // Polls a little before the serving thread sleeps (see the module for
    // why; with several workers it could not poll); ends with this function.
    let spin = match tokio::runtime::Handle::current().metrics().num_workers() {
        1 => std::time::Duration::from_micros(args.spin.into()),
        _ => std::time::Duration::ZERO,
    };
    let _spinner = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        mailnet::listener::spin::SERVING.spin(spin),
    ));
    let joined = match (args.join, &key) {
        (Some(hub), Some(key)) => {
            let advertised = running
                .network
                .advertise
                .unwrap_or_else(|| running.network.advertised_bind());
            let owner = mailnet::join::owner_name(advertised);
            match mailnet::join::Joined::join(&running, hub, key, &owner, args.force).await {
                Ok(joined) => Some(joined),
                Err(error) => {
                    running.stop().await;
                    return Err(error.into());
                }
            }
        }
        _ => None,
    };
    let web_stop = CancellationToken::new();
    let mut web_task = None;
    if let (Some(listener), Some(recorder)) = (web, recorder) {
        let addr = listener.local_addr()?;
        let state = mailnet::web::WebState::of(&running, recorder);
        let token = web_stop.clone();
        web_task = Some(tokio::spawn(async move {
            if let Err(error) = mailnet::web::serve(listener, state, token).await {
                tracing::error!(%error, "the web server stopped");
            }
        }));
        println!("web: http://{addr}/ (dashboard; API at http://{addr}/api/v1/)");
    }
    if let Some(dir) = &args.pcap {
        println!(
            "pcap: each session is written to {} as it closes",
            dir.display()
        );
    }
    print!("{}", table(&running));
    if let Some(joined) = &joined {
        println!(
            "joined hub {hub}: {} registered ({} records); relays look up through the hub, and the fake DNS here asks it about other domains (from other machines: mailnet send/fetch --dns {hub})",
            joined.zones().join(", "),
            joined.record_count(),
            hub = joined.hub(),
        );
    }
    println!("ready; Ctrl-C stops");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    stop.await;
    eprintln!("mailnet: stopping");
    if let Some(joined) = &joined {
        // Before the servers stop: a peer that looks us up meanwhile finds
        // nothing rather than a server that is going away.
        match joined.leave().await {
            Ok(()) => eprintln!("mailnet: records removed from hub {}", joined.hub()),
            Err(error) => eprintln!("mailnet: warning: {error}"),
        }
    }
    web_stop.cancel();
    if let Some(task) = web_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), task).await;
    }
    running.stop().await;
    Ok(())
}

/// A web port that cannot be bound, in one line.
fn web_bind_error(addr: std::net::SocketAddr, error: std::io::Error) -> anyhow::Error {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "web: {addr} is already in use (another mailnet, Mailpit, or another program holds it); give --web ADDR"
        ),
        _ => anyhow::anyhow!("web: cannot listen on {addr}: {error}"),
    }
}

/// Runs `mailnet dns` until a stop signal.
pub async fn dns(args: &super::DnsArgs) -> anyhow::Result<()> {
    let mut network = load_network(args.file.as_deref())?;
    if let Some(advertise) = args.advertise {
        network.advertise = Some(advertise);
    }
    let listen = args.dns_listen.unwrap_or(network.dns);
    let ports: Vec<_> = network.servers.iter().map(|s| s.ports).collect();
    let zone = fake_dns::Zone::build(&network.facts(&ports))?;
    let udp = UdpSocket::bind(listen)
        .await
        .with_context(|| format!("fake DNS: cannot listen on {listen} (UDP)"))?;
    let real = udp.local_addr()?;
    let tcp = TcpListener::bind(real)
        .await
        .with_context(|| format!("fake DNS: cannot listen on {real} (TCP)"))?;
    let stop = stop_signal();
    println!("mailnet: fake DNS for {} on {real}; ready", network.source);
    let token = CancellationToken::new();
    let stopper = token.clone();
    tokio::spawn(async move {
        stop.await;
        stopper.cancel();
    });
    fake_dns::serve(fake_dns::ZoneHandle::new(zone), udp, tcp, token).await?;
    Ok(())
}
