//! Booting a network: bind every listener first (so a port in use is one
//! clear error before anything runs), publish the real ports in the zone,
//! then serve until told to stop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use fake_dns::{Zone, ZoneHandle};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mailhost::MailHost;
use crate::network::{Network, Ports, ServerConfig};
use crate::resolve::MailResolver;
use crate::service::Service;

/// How to boot.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Run only this server's listeners (and no DNS).
    pub only: Option<String>,
    /// Servers that run elsewhere (a student's, or a real MTA such as
    /// Postfix): not run here, but published in the DNS at the addresses and
    /// ports the network gives, so the servers run here relay to them.
    pub skip: Vec<String>,
    /// Resolve through this DNS instead of the network's own zone; the
    /// network's fake DNS, when it runs, forwards names outside its zones there.
    pub dns: Option<SocketAddr>,
    /// Bind address for every listener, overriding the file's.
    pub bind: Option<IpAddr>,
    /// Address published in `A` records, overriding the file's.
    pub advertise: Option<IpAddr>,
    /// Where mail lives; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Print every session's transcript as it happens.
    pub live_transcripts: bool,
    /// Flush every accepted message to the disk before acknowledging it.
    pub fsync: bool,
    /// Where the network CA lives; [`crate::tls::default_dir`] when `None`.
    pub ca_dir: Option<PathBuf>,
    /// Record every session's bytes here (for `--web` and `--pcap`).
    pub recorder: Option<crate::capture::Recorder>,
    /// The seed of the faults' random choices; a fresh one when `None`.
    pub seed: Option<u64>,
    /// Relay retries and queue lifetimes run on a clock that only
    /// [`crate::relay::RelayClock::advance`] moves (scenarios).
    pub frozen_clock: bool,
}

/// Why a network could not boot. Each is one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// A listener's port is taken.
    #[error("{what}: {addr} is already in use (another mailnet, or another program, holds it)")]
    PortInUse {
        /// Which listener, e.g. "server gmail.com: SMTP".
        what: String,
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A port below 1024 without the privilege to bind it.
    #[error("{what}: {addr}: ports below 1024 need privilege: run as root, or `sudo setcap cap_net_bind_service=+ep $(command -v mailnet)`, or `sudo sysctl net.ipv4.ip_unprivileged_port_start=25`")]
    PrivilegedPort {
        /// Which listener.
        what: String,
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Any other bind failure.
    #[error("{what}: cannot listen on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// `--only` named a server the network does not have.
    #[error("--only {0}: the network has no such server (servers: {1})")]
    UnknownServer(String, String),
    /// `--skip` named a server the network does not have.
    #[error("--skip {0}: the network has no such server (servers: {1})")]
    UnknownSkipped(String, String),
    /// The data directory could not be prepared.
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, io::Error),
    /// Another process uses the data directory.
    #[error("data directory {0}")]
    DataDirLocked(#[from] crate::store::LockError),
    /// A name could not be published.
    #[error("{0}")]
    Zone(#[from] fake_dns::zone::ZoneError),
}

/// One server as it runs.
#[derive(Clone)]
pub struct RunningServer {
    /// Its state (config, mailboxes, queue, transcripts).
    pub host: MailHost,
    /// Where each service listens, at [`Service::index`].
    listening: [SocketAddr; Service::ALL.len()],
    /// Its listeners' and relay's stop signal and tasks, while it runs
    /// (`None` while stopped by [`RunningNetwork::stop_server`]).
    run: std::sync::Arc<tokio::sync::Mutex<Option<ServerRun>>>,
    /// While stopped: its ports, bound but not listening, so connections
    /// are refused and no other socket takes a port picked at random
    /// (port 0) before it starts again (that lost a restart in CI).
    held: std::sync::Arc<std::sync::Mutex<Vec<tokio::net::TcpSocket>>>,
}

/// What stops one server, and what to wait for.
struct ServerRun {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl ServerRun {
    async fn end(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl RunningServer {
    /// Where its `service` listens (port 0 for a service it does not run:
    /// a server without a submission port).
    pub fn addr(&self, service: Service) -> SocketAddr {
        self.listening[service.index()]
    }
}

/// Why a server could not be stopped or started.
#[derive(Debug, thiserror::Error)]
pub enum ServerControlError {
    /// No server of that name runs in this process.
    #[error("no server `{0}` runs here")]
    Unknown(String),
    /// Started while running.
    #[error("server `{0}` is already running")]
    Running(String),
    /// Stopped while stopped.
    #[error("server `{0}` is already stopped")]
    Stopped(String),
    /// Its port could not be bound again.
    #[error(transparent)]
    Bind(#[from] UpError),
}

/// Starts a server's listeners and relay, stopped by a child of `parent`.
fn spawn_server(
    host: &MailHost,
    listeners: Vec<(Service, TcpListener)>,
    resolver: &MailResolver,
    clock: &crate::relay::RelayClock,
    parent: &CancellationToken,
) -> ServerRun {
    let stop = parent.child_token();
    let tasks = TaskTracker::new();
    for (service, listener) in listeners {
        let (host, stop, sessions) = (host.clone(), stop.clone(), tasks.clone());
        match service.protocol() {
            Service::Pop3 => tasks.spawn(crate::pop3::server::serve(
                listener, host, service, stop, sessions,
            )),
            _ => tasks.spawn(crate::smtp::server::serve(
                listener, host, service, stop, sessions,
            )),
        };
    }
    tasks.spawn(crate::relay::worker::run(
        host.clone(),
        resolver.clone(),
        clock.clone(),
        stop.clone(),
    ));
    ServerRun { stop, tasks }
}

/// A booted network.
pub struct RunningNetwork {
    /// The network as booted (bind and advertise applied).
    pub network: Network,
    /// Where the fake DNS listens, when this process runs it.
    pub dns: Option<SocketAddr>,
    /// The servers this process runs.
    pub servers: Vec<RunningServer>,
    /// The zone in force (real ports).
    pub zone: ZoneHandle,
    /// How this process resolves names.
    pub resolver: MailResolver,
    /// The relays' clock; advance it to make retries and lifetimes pass.
    pub clock: crate::relay::RelayClock,
    /// What happens to mail and sessions, as events.
    pub events: crate::events::Events,
    /// The scripted faults in force, and the seed of their choices.
    pub faults: crate::fault::Faults,
    /// Where mail lives.
    pub data_dir: PathBuf,
    /// The network CA's certificate, which clients trust for TLS (`None`
    /// when the CA could not be opened: the servers then offer no TLS).
    pub ca_cert: Option<PathBuf>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Held while running: one process per data directory.
    _lock: crate::store::DataDirLock,
    _temp: Option<tempfile::TempDir>,
}

/// An address a client can connect to: an unspecified bind (`0.0.0.0`) is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        IpAddr::V6(v6) if v6.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

fn bind_error(what: String, addr: SocketAddr, source: io::Error) -> UpError {
    if source.kind() == io::ErrorKind::AddrInUse {
        UpError::PortInUse { what, addr }
    } else if source.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024 {
        UpError::PrivilegedPort { what, addr }
    } else {
        UpError::Bind { what, addr, source }
    }
}

/// A socket bound to `addr` that does not listen: connections to it are
/// refused, and the port stays ours. Without `SO_REUSEADDR` when it can
/// (then no other socket may bind the port, reuse or not); with it when
/// connections just closed leave the port in `TIME_WAIT` (then the kernel
/// still skips the port for sockets asking for any free one).
fn hold_port(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let bound = |reuse: bool| {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(reuse)?;
        socket.bind(addr)?;
        Ok::<_, std::io::Error>(socket)
    };
    match bound(false) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bound(true),
        other => other,
    }
}

async fn bind_tcp(what: String, addr: SocketAddr) -> Result<TcpListener, UpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(what, addr, e))
}

/// Binds UDP and TCP on one port for a DNS server (`what` names it in
/// errors); with port 0, finds a port free for both.
pub async fn bind_dns(what: &str, addr: SocketAddr) -> Result<(UdpSocket, TcpListener), UpError> {
    let what = what.to_string();
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_error(what.clone(), addr, e))?;
        let real = udp
            .local_addr()
            .map_err(|e| bind_error(what.clone(), addr, e))?;
        match TcpListener::bind(real).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // Port 0 gave a UDP port whose TCP twin is taken: try another.
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(bind_error(what, real, e)),
        }
    }
    Err(UpError::PortInUse { what, addr })
}

/// The names a server's certificate covers: its own, its MX, SMTP and POP3
/// hosts, and the address it publishes (clients that connect by address).
fn tls_names(server: &ServerConfig, network: &Network) -> Vec<String> {
    let mut names = vec![
        server.name.clone(),
        server.mx.clone(),
        server.smtp_host.clone(),
        server.pop3_host.clone(),
    ];
    let ip = server
        .advertise
        .or(server.bind)
        .or(network.advertise)
        .unwrap_or(network.bind);
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.dedup();
    names
}

/// The addresses of the network's own servers, trusted to relay like
/// loopback (Postfix's `mynetworks`): where they bind and what they publish.
fn own_addresses(network: &Network) -> Vec<ipnet::IpNet> {
    let mut out: Vec<ipnet::IpNet> = Vec::new();
    let listed = std::iter::once(Some(network.bind))
        .chain(std::iter::once(network.advertise))
        .chain(network.servers.iter().map(|s| s.advertise))
        .chain(network.servers.iter().map(|s| s.bind));
    for ip in listed.flatten() {
        if !ip.is_unspecified() {
            out.push(ipnet::IpNet::from(ip));
        }
    }
    out
}

impl RunningNetwork {
    /// Boots `network` as `options` say.
    pub async fn start(
        mut network: Network,
        options: UpOptions,
    ) -> Result<RunningNetwork, UpError> {
        if let Some(bind) = options.bind {
            network.bind = bind;
            network.dns.set_ip(bind);
        }
        if let Some(advertise) = options.advertise {
            network.advertise = Some(advertise);
        }
        let names = || {
            let names: Vec<&str> = network.servers.iter().map(|s| s.name.as_str()).collect();
            names.join(", ")
        };
        if let Some(name) = options.skip.iter().find(|n| {
            !network
                .servers
                .iter()
                .any(|s| s.name.eq_ignore_ascii_case(n))
        }) {
            return Err(UpError::UnknownSkipped(name.clone(), names()));
        }
        let selected: Vec<usize> = match &options.only {
            Some(name) => match network
                .servers
                .iter()
                .position(|s| s.name.eq_ignore_ascii_case(name))
            {
                Some(i) => vec![i],
                None => return Err(UpError::UnknownServer(name.clone(), names())),
            },
            None => (0..network.servers.len())
                .filter(|&i| {
                    !options
                        .skip
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(&network.servers[i].name))
                })
                .collect(),
        };

        // Bind everything before starting anything.
        let mut listeners = Vec::new();
        for &i in &selected {
            let server = &network.servers[i];
            let mut bound = Vec::with_capacity(Service::ALL.len());
            for service in server.services() {
                let addr =
                    SocketAddr::new(server.bind.unwrap_or(network.bind), server.port(service));
                let what = format!("server {}: {service}", server.name);
                let listener = bind_tcp(what.clone(), addr).await?;
                let real = listener
                    .local_addr()
                    .map_err(|e| bind_error(what, addr, e))?;
                bound.push((service, listener, real));
            }
            listeners.push((i, bound));
        }
        tracing::debug!("listeners bound");
        let dns_sockets = if options.only.is_none() {
            Some(bind_dns("fake DNS", network.dns).await?)
        } else {
            None
        };

        // Publish real ports: ours as bound, others' as the file says.
        let mut ports: Vec<Ports> = network.servers.iter().map(|s| s.ports).collect();
        for (i, bound) in &listeners {
            for (service, _, real) in bound {
                ports[*i][service.index()] = real.port();
            }
        }
        let zone = ZoneHandle::new(Zone::build(&network.facts(&ports))?);
        tracing::debug!("zone built");

        let (data_dir, temp) = match &options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| UpError::DataDir(dir.clone(), e))?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("mailnet-")
                    .tempdir()
                    .map_err(|e| UpError::DataDir(std::env::temp_dir(), e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };

        let lock = crate::store::DataDirLock::acquire(&data_dir)?;

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let faults =
            crate::fault::Faults::new(options.seed.unwrap_or_else(crate::fault::random_seed));
        for fault in &network.faults {
            faults.add(fault.clone());
        }
        let mut dns = None;
        if let Some((udp, tcp)) = dns_sockets {
            dns = Some(
                udp.local_addr()
                    .map_err(|e| bind_error("fake DNS".into(), network.dns, e))?,
            );
            // Never forward to ourselves: each question would loop until
            // its deadline.
            let upstream = options
                .dns
                .filter(|up| dns.is_none_or(|own| reachable(own) != reachable(*up)));
            let (zone, token) = (zone.clone(), shutdown.clone());
            let asked = faults.clone();
            let hook: fake_dns::QueryFaults = std::sync::Arc::new(move |name, rtype| {
                use crate::fault::DnsAnswer;
                asked
                    .probe_dns(name, &rtype.to_string())
                    .map(|answer| match answer {
                        DnsAnswer::ServFail => fake_dns::Injected::ServFail,
                        DnsAnswer::NxDomain => fake_dns::Injected::NxDomain,
                        DnsAnswer::Refused => fake_dns::Injected::Refused,
                        DnsAnswer::Timeout => fake_dns::Injected::Silence,
                    })
            });
            tracker.spawn(async move {
                if let Err(error) =
                    fake_dns::serve_with_faults(zone, upstream, Some(hook), udp, tcp, token).await
                {
                    tracing::error!(%error, "fake DNS stopped");
                }
            });
        }
        // Relays ask a real DNS server whenever there is one: the one named by
        // --dns, else this process's own. Only a server running alone (--only,
        // no --dns) reads the in-memory zone directly.
        let resolver = match (options.dns, dns) {
            (Some(addr), _) => MailResolver::from_dns(addr),
            (None, Some(own)) => MailResolver::from_dns(reachable(own)),
            (None, None) => MailResolver::from_zone(zone.clone()),
        };

        let clock = if options.frozen_clock {
            crate::relay::RelayClock::frozen()
        } else {
            crate::relay::RelayClock::default()
        };
        let events = crate::events::Events::new();
        let own = own_addresses(&network);
        let ca_dir = options
            .ca_dir
            .clone()
            .unwrap_or_else(crate::tls::default_dir);
        let ca = match crate::tls::NetworkCa::open(&ca_dir) {
            Ok(ca) => Some(ca),
            Err(error) => {
                tracing::warn!(error = %crate::error_chain(&error), "no TLS: the network CA cannot be opened");
                None
            }
        };
        // Shared as if each server had its two plain listeners busy: the
        // implicit-TLS ones are seldom full at the same time, and the accept
        // loop's back-off covers the rare moment they are.
        let fd_share =
            crate::fdlimit::sessions_per_listener(crate::fdlimit::current(), listeners.len() * 2);
        let mut servers = Vec::new();
        for (i, bound) in listeners {
            let mut config: ServerConfig = network.servers[i].clone();
            config.policy.mynetworks.extend(own.iter().copied());
            if config.policy.max_sessions > fd_share {
                tracing::info!(server = %config.name, sessions = fd_share, "session cap lowered to fit the descriptor limit");
                config.policy.max_sessions = fd_share;
            }
            let dir = crate::network::server_dir(&data_dir, &config);
            let names = tls_names(&config, &network);
            let mut host = MailHost::open(config, &dir, options.live_transcripts, options.fsync)
                .map_err(|e| UpError::DataDir(dir.clone(), e))?
                .with_observers(events.clone(), options.recorder.clone())
                .with_faults(faults.clone());
            if let Some(ca) = &ca {
                match ca
                    .server_config(&names)
                    .and_then(|s| Ok((s, ca.client_config()?)))
                {
                    Ok((tls, client)) => host = host.with_tls(tls, client),
                    Err(error) => {
                        tracing::warn!(error = %crate::error_chain(&error), "no TLS for this server")
                    }
                }
            }
            let mut listening = [SocketAddr::from(([127, 0, 0, 1], 0)); Service::ALL.len()];
            let mut sockets = Vec::new();
            for (service, listener, real) in bound {
                listening[service.index()] = real;
                sockets.push((service, listener));
            }
            let run = spawn_server(&host, sockets, &resolver, &clock, &shutdown);
            servers.push(RunningServer {
                host,
                listening,
                run: std::sync::Arc::new(tokio::sync::Mutex::new(Some(run))),
                held: Default::default(),
            });
        }

        Ok(RunningNetwork {
            network,
            dns,
            servers,
            zone,
            resolver,
            clock,
            events,
            faults,
            data_dir,
            ca_cert: ca.as_ref().map(|ca| ca.cert_path()),
            shutdown,
            tracker,
            _lock: lock,
            _temp: temp,
        })
    }

    /// What this process publishes about the servers it runs: their mail
    /// domains, host names, advertised addresses and real ports.
    pub fn published_facts(&self) -> fake_dns::NetworkFacts {
        let mut ports: Vec<Ports> = self.network.servers.iter().map(|s| s.ports).collect();
        for (i, server) in self.network.servers.iter().enumerate() {
            if let Some(running) = self.server(&server.name) {
                for service in Service::ALL {
                    ports[i][service.index()] = running.addr(service).port();
                }
            }
        }
        let mut facts = self.network.facts(&ports);
        let here: Vec<String> = self
            .servers
            .iter()
            .map(|s| s.host.config().name.to_ascii_lowercase())
            .collect();
        let skipped: Vec<String> = self
            .network
            .servers
            .iter()
            .filter(|s| self.server(&s.name).is_none() && self.dns.is_some())
            .map(|s| s.name.to_ascii_lowercase())
            .collect();
        // Servers run here, and those skipped for another program here
        // (published by this process's DNS too); not those of `--only`'s others.
        facts.hosts.retain(|h| {
            here.contains(&h.name.to_ascii_lowercase())
                || skipped.contains(&h.name.to_ascii_lowercase())
        });
        facts
    }

    /// The running server named `name`.
    pub fn server(&self, name: &str) -> Option<&RunningServer> {
        self.servers
            .iter()
            .find(|s| s.host.config().name.eq_ignore_ascii_case(name))
    }

    /// The running server hosting mail domain `domain`.
    pub fn server_for_domain(&self, domain: &str) -> Option<&RunningServer> {
        self.servers
            .iter()
            .find(|s| s.host.config().hosts_domain(domain))
    }

    /// A token that stops the network when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Takes server `name` down: its ports close (connections are refused),
    /// its sessions get `421`, its relay stops; its mail stays on disk.
    pub async fn stop_server(&self, name: &str) -> Result<(), ServerControlError> {
        let server = self
            .server(name)
            .ok_or_else(|| ServerControlError::Unknown(name.to_string()))?;
        let run = server
            .run
            .lock()
            .await
            .take()
            .ok_or_else(|| ServerControlError::Stopped(name.to_string()))?;
        run.end().await;
        let mut held = server.held.lock().unwrap_or_else(|e| e.into_inner());
        for service in server.host.config().services() {
            match hold_port(server.addr(service)) {
                Ok(socket) => held.push(socket),
                Err(error) => tracing::warn!(
                    server = %server.host.config().name, %service, %error,
                    "cannot hold the port while stopped; another program may take it"
                ),
            }
        }
        tracing::info!(server = %server.host.config().name, "stopped");
        Ok(())
    }

    /// Brings server `name` back up on the ports it had.
    pub async fn start_server(&self, name: &str) -> Result<(), ServerControlError> {
        let server = self
            .server(name)
            .ok_or_else(|| ServerControlError::Unknown(name.to_string()))?;
        let mut run = server.run.lock().await;
        if run.is_some() {
            return Err(ServerControlError::Running(name.to_string()));
        }
        // Let go of the ports just before listening on them again.
        server
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut sockets = Vec::new();
        for service in server.host.config().services() {
            let addr = server.addr(service);
            let what = format!("server {}: {service}", server.host.config().name);
            sockets.push((service, bind_tcp(what, addr).await?));
        }
        *run = Some(spawn_server(
            &server.host,
            sockets,
            &self.resolver,
            &self.clock,
            &self.shutdown,
        ));
        tracing::info!(server = %server.host.config().name, "started");
        Ok(())
    }

    /// Stops every listener and session (sessions get `421`) and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for server in &self.servers {
            if let Some(run) = server.run.lock().await.take() {
                run.end().await;
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        // Mail still in a delivery journal goes to its Maildir now, so the
        // folders are whole for whoever looks after the stop. Bounded, to
        // stop in a second or two whatever the backlog; the rest is placed
        // at the next start.
        let stores: Vec<_> = self
            .servers
            .iter()
            .map(|s| s.host.store().clone())
            .collect();
        let flushed = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
            for store in stores {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match store.flush_journal(left) {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "{}: some mail is still in the delivery journal; it reaches its Maildir at the next start",
                        store.root().display()
                    ),
                    Err(e) => tracing::error!("{}: placing journalled mail: {e}", store.root().display()),
                }
            }
        });
        let _ = flushed.await;
    }
}
