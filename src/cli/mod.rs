//! The `mailnet` command line: one module per subcommand.

pub mod bench;
pub mod ca;
pub mod check;
pub mod fetch;
pub mod hub;
pub mod inspect;
pub mod send;
pub mod test;
pub mod up;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// An error and its causes on one line, each cause once (a message that
/// already quotes its cause does not get it again).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// An agent's (`send`, `fetch`) failure, with the likely reason when
/// nothing answered: the network is not running. One line, naming what
/// was tried.
pub fn agent_error(error: anyhow::Error, dns: SocketAddr, had_server: bool) -> anyhow::Error {
    let refused = error.chain().any(|cause| {
        let io =
            cause.downcast_ref::<std::io::Error>().or_else(|| {
                match cause.downcast_ref::<mailnet::wire::ClientError>() {
                    Some(mailnet::wire::ClientError::Io(e)) => Some(e),
                    _ => None,
                }
            });
        io.is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    let dns_silent = error.chain().any(|cause| {
        cause
            .downcast_ref::<mailnet::resolve::ResolveError>()
            .is_some_and(mailnet::resolve::ResolveError::is_temporary)
    });
    // Each machine's mailnet has a CA of its own: a server on another
    // machine (a class hub's peers) shows a certificate this one cannot check.
    let untrusted = error
        .chain()
        .any(|cause| cause.to_string().contains("invalid peer certificate"));
    if untrusted {
        anyhow::anyhow!(
            "{}; the server's certificate is not from this machine's network CA (`mailnet ca --path`): a server on another machine? Use --tls off, or trust that machine's CA (its `mailnet ca --path` file, with `mailnet ca --install` there or your system's trust store here)",
            one_line(&error)
        )
    } else if refused {
        anyhow::anyhow!("{}; is `mailnet up` running?", one_line(&error))
    } else if dns_silent && !had_server {
        anyhow::anyhow!(
            "no answer from the DNS at {dns}; is `mailnet up` running? (or give --server HOST:PORT)"
        )
    } else {
        error
    }
}

/// A whole mail network on one machine: SMTP, POP3 and DNS for several virtual domains.
#[derive(Debug, Parser)]
#[command(name = "mailnet", version, about, propagate_version = true)]
pub struct Cli {
    /// Only warnings and errors on stderr.
    #[arg(
        long,
        short,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    pub quiet: bool,
    /// Debug logging on stderr (RUST_LOG overrides either).
    #[arg(long, short, global = true, help_heading = "Global options")]
    pub verbose: bool,
    /// Log format: human text, or one JSON object a line for CI.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        help_heading = "Global options"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// For machines.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a network: fake DNS plus every server's SMTP and POP3, until Ctrl-C.
    Up(UpArgs),
    /// Serve only the fake DNS of a network file.
    Dns(DnsArgs),
    /// Run YAML scenarios against fresh networks and report a score.
    Test(test::TestArgs),
    /// Check network and scenario files without running them.
    Check(CheckArgs),
    /// Show a stored message or mailbox: headers, MIME parts; extract attachments.
    Inspect(InspectArgs),
    /// Compose and send mail (flags, or the HW3 prompts when no --to is given).
    Send(send::SendArgs),
    /// Read a mailbox over POP3: list, retrieve, save attachments, download, delete.
    Fetch(fetch::FetchArgs),
    /// Measure boot time, SMTP, POP3 or relay throughput.
    Bench(bench::BenchArgs),
    /// The network's certificate authority: its path, or install it for the system.
    Ca(ca::CaArgs),
    /// The class DNS: machines register their domains with `up --join` (RFC 2136 + TSIG).
    Hub(hub::HubArgs),
}

/// `mailnet up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The network file; the built-in default network when omitted.
    pub file: Option<PathBuf>,
    /// Run only this server's SMTP and POP3 (no DNS): one network over several processes.
    #[arg(long, value_name = "SERVER")]
    pub only: Option<String>,
    /// Run every server but this one (repeatable): it is still published in
    /// the DNS, at its address and ports, for another program (a real MTA, a
    /// student's server) to serve there.
    #[arg(long, value_name = "SERVER", conflicts_with = "only")]
    pub skip: Vec<String>,
    /// Resolve other servers through this DNS (another `mailnet up` or `mailnet dns`).
    #[arg(long, value_name = "ADDR")]
    pub dns: Option<SocketAddr>,
    /// Where the fake DNS listens, overriding the file (default 127.0.0.1:5300).
    #[arg(long, value_name = "ADDR")]
    pub dns_listen: Option<SocketAddr>,
    /// Bind address for every listener (default 127.0.0.1).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Address published in A records, for demos across machines.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<IpAddr>,
    /// Keep mail here (reused across restarts) instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print every SMTP and POP3 dialogue live, like a packet capture.
    #[arg(long)]
    pub transcripts: bool,
    /// Pick free ports for everything (the real ones are printed and published).
    #[arg(long, conflicts_with = "standard_ports")]
    pub ephemeral: bool,
    /// Give every server its own loopback address (127.0.0.2, 127.0.0.3, …)
    /// and the standard ports (SMTP 25, submission 587, POP3 110, SMTPS 465,
    /// POP3S 995), with the DNS on
    /// 127.0.0.1:53, so real MTAs find servers by plain MX lookups.
    #[arg(long)]
    pub standard_ports: bool,
    /// fsync every accepted message before its 250 (survives power loss, not just a crash).
    #[arg(long)]
    pub fsync: bool,
    /// Seed of the faults' random choices (`probability:`): the same seed
    /// repeats a run's outcomes. A fresh one is chosen and printed when omitted.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Threads serving the network (default: one fewer than the CPUs, at
    /// least one, so the clients under test keep a core).
    #[arg(long, value_name = "N", env = "MAILNET_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Microseconds the serving thread keeps polling after the last read
    /// before it sleeps (0: sleep at once; only with one thread). Costs at
    /// most that much CPU after each burst of traffic; saves clients the
    /// price of waking an idle server, which under load cost up to a fifth
    /// of their rate.
    #[arg(long, value_name = "MICROSECONDS", env = "MAILNET_SPIN", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub spin: u32,
    /// Every server is a catch-all: mail for any address of its domains is
    /// taken (policy `accept_any`), for CI that does not want to list users.
    #[arg(long)]
    pub accept_any: bool,
    /// Every server applies the exact COMP 431 HW1/HW3 command grammar (policy `strict`).
    #[arg(long)]
    pub strict: bool,
    /// Register this network at a class hub (`mailnet hub`), IP[:PORT]
    /// (port 53 by default), and resolve every look-up through it. Binds
    /// and advertises the address that routes to the hub unless --bind or
    /// --advertise say otherwise.
    #[arg(long, value_name = "HUB", value_parser = mailnet::join::parse_hub, requires = "key", conflicts_with = "dns")]
    pub join: Option<SocketAddr>,
    /// The hub's TSIG key file (BIND format), as `mailnet hub` created it.
    #[arg(long, value_name = "FILE", requires = "join")]
    pub key: Option<PathBuf>,
    /// Take over names another machine registered at the hub.
    #[arg(long, requires = "join")]
    pub force: bool,
    /// Serve the dashboard and the REST API (`/api/v1`) at ADDR
    /// (127.0.0.1:8025, Mailpit's port, when no ADDR is given).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = mailnet::web::DEFAULT_ADDR)]
    pub web: Option<SocketAddr>,
    /// Write each session as a pcapng file into DIR when it closes
    /// (decrypted when it used TLS), for Wireshark.
    #[arg(long, value_name = "DIR")]
    pub pcap: Option<PathBuf>,
}

/// `mailnet dns`.
#[derive(Debug, clap::Args)]
pub struct DnsArgs {
    /// The network file; the built-in default network when omitted.
    pub file: Option<PathBuf>,
    /// Where the fake DNS listens, overriding the file (default 127.0.0.1:5300).
    #[arg(long, value_name = "ADDR", alias = "listen")]
    pub dns_listen: Option<SocketAddr>,
    /// Address published in A records.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<IpAddr>,
}

/// `mailnet check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `mailnet inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A message file, a mailbox (Maildir) folder, or a data directory (or
    /// one server's folder in it) to list every mailbox and message.
    pub path: PathBuf,
    /// Write every attachment into this folder.
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
}
