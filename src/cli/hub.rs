//! `mailnet hub`: the class DNS that students' networks register at.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use fake_dns::hub::server::{serve_hub, Hub, HubEvent};
use fake_dns::hub::TsigKey;
use tokio_util::sync::CancellationToken;

/// `mailnet hub` arguments.
#[derive(Debug, clap::Args)]
pub struct HubArgs {
    /// Where to answer DNS (UDP and TCP). Give the class network's address
    /// (or 0.0.0.0) for other machines to reach it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:53")]
    pub listen: std::net::SocketAddr,
    /// The TSIG key file (BIND format, as `nsupdate -k` reads it); created
    /// with a new hmac-sha256 secret when missing. Give it to the students.
    #[arg(long, value_name = "FILE", default_value = "class.key")]
    pub key: PathBuf,
    /// The key's name when the file is created (default: the file's name
    /// without its extension).
    #[arg(long, value_name = "NAME")]
    pub key_name: Option<String>,
    /// Keep registrations in this zone file, across restarts.
    #[arg(long, value_name = "FILE")]
    pub zone_file: Option<PathBuf>,
}

fn time_now() -> String {
    let now = mailnet::date::clock_time(std::time::SystemTime::now());
    now.split('.').next().unwrap_or(&now).to_string()
}

/// One line for the teacher about what happened.
pub fn describe(event: &HubEvent) -> String {
    match event {
        HubEvent::Updated {
            from,
            key,
            zone,
            change,
        } => {
            let zone = zone.trim_end_matches('.');
            let mut facts: Vec<String> = Vec::new();
            for record in &change.added {
                let owner = record.name.to_string();
                let owner = owner.trim_end_matches('.');
                match &record.data {
                    fake_dns::proto::rr::RData::MX(mx) => facts.push(format!(
                        "MX {}",
                        mx.exchange.to_string().trim_end_matches('.')
                    )),
                    fake_dns::proto::rr::RData::A(a)
                        if owner.starts_with("mx.") || facts.len() < 2 =>
                    {
                        let fact = format!("{owner} {}", a.0);
                        if !facts.contains(&fact) {
                            facts.push(fact)
                        }
                    }
                    fake_dns::proto::rr::RData::SRV(srv) if owner.starts_with("_smtp._tcp") => {
                        facts.push(format!("SMTP port {}", srv.port))
                    }
                    fake_dns::proto::rr::RData::SRV(srv)
                        if owner.starts_with("_submission._tcp") =>
                    {
                        facts.push(format!("submission port {}", srv.port))
                    }
                    fake_dns::proto::rr::RData::SRV(srv) if owner.starts_with("_pop3._tcp") => {
                        facts.push(format!("POP3 port {}", srv.port))
                    }
                    _ => {}
                }
            }
            facts.dedup();
            let what = if change.dropped {
                format!("removed {zone} ({} records)", change.removed)
            } else if change.added.is_empty() && change.removed == 0 {
                format!("changed nothing in {zone}")
            } else {
                format!(
                    "{} {zone}: {} added, {} removed{}",
                    if change.created {
                        "registered"
                    } else {
                        "updated"
                    },
                    change.added.len(),
                    change.removed,
                    if facts.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", facts.join(", "))
                    }
                )
            };
            format!("{} {} (key {key}) {what}", time_now(), from.ip())
        }
        HubEvent::Refused { from, zone, why } => format!(
            "{} {} refused: update of {}: {why}",
            time_now(),
            from.ip(),
            zone.trim_end_matches('.')
        ),
        HubEvent::NotSaved(why) => {
            format!("{} warning: registrations not saved: {why}", time_now())
        }
    }
}

/// Runs the hub until a stop signal.
pub async fn run(args: &HubArgs) -> anyhow::Result<()> {
    let name = args.key_name.clone().unwrap_or_else(|| {
        args.key
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "class".into())
    });
    let (key, created) = TsigKey::load_or_create(&args.key, &name)?;
    let hub = Hub::new(
        key.clone(),
        args.zone_file.clone(),
        Box::new(|event| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", describe(&event));
            let _ = out.flush();
        }),
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| "cannot start the hub")?;
    let hub = Arc::new(hub);
    let (udp, tcp) = mailnet::orchestrator::bind_dns("hub", args.listen).await?;
    let listen = udp.local_addr()?;
    let stop = super::up::stop_signal();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_hub(hub.clone(), udp, tcp, shutdown.clone()));

    println!(
        "mailnet hub: answering DNS on {listen} (UDP and TCP); key \"{}\" {} {}",
        key.name,
        if created { "created in" } else { "read from" },
        args.key.display()
    );
    match &args.zone_file {
        Some(file) => {
            let zones = hub.zones();
            println!(
                "registrations kept in {}; {} there now{}",
                file.display(),
                mailnet::text::count(zones.len() as u64, "zone"),
                if zones.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        zones
                            .iter()
                            .map(|z| z.to_string().trim_end_matches('.').to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )
        }
        None => println!("registrations in memory only (--zone-file FILE keeps them)"),
    }
    let shown = if listen.ip().is_unspecified() {
        "THIS-MACHINE-IP".to_string()
    } else {
        listen.ip().to_string()
    };
    let port = if listen.port() == 53 {
        String::new()
    } else {
        format!(":{}", listen.port())
    };
    println!(
        "students: mailnet up NET.yaml --join {shown}{port} --key {}   (see: dig @{shown} -p {} DOMAIN MX)",
        args.key.display(),
        listen.port()
    );
    println!("ready; Ctrl-C stops");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    stop.await;
    eprintln!("mailnet: stopping the hub");
    shutdown.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
    Ok(())
}
