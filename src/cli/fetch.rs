//! `mailnet fetch`: read a mailbox over POP3 — list, retrieve, save
//! attachments, download everything, delete.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use mailnet::agent::locate::locate;
use mailnet::agent::mailbox::{Entry, Pop3Session};

/// `mailnet fetch` arguments.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The user (an address); the POP3 server is found by `SRV _pop3._tcp.<its domain>`.
    #[arg(long)]
    pub user: String,
    /// Password (or MAILNET_PASSWORD; asked without echo on a terminal).
    #[arg(long, env = "MAILNET_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The POP3 server, HOST:PORT, instead of the DNS look-up.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// The DNS to find servers with, IP[:PORT] (port 53 when only an IP is
    /// given): the network's fake DNS, or a class hub.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5300", value_parser = mailnet::join::parse_hub)]
    pub dns: SocketAddr,
    /// List the messages (number, size, id, subject); what fetch does without other options.
    #[arg(long)]
    pub list: bool,
    /// Retrieve message N: printed, or written to --output.
    #[arg(long, value_name = "N")]
    pub retr: Option<usize>,
    /// Where --retr writes the message.
    #[arg(long, value_name = "FILE", requires = "retr")]
    pub output: Option<PathBuf>,
    /// Download every message into DIR (a Maildir, or .eml files with --eml).
    #[arg(long, value_name = "DIR", conflicts_with = "retr")]
    pub all: Option<PathBuf>,
    /// With --all: write `<n>-<id>.eml` files instead of a Maildir.
    #[arg(long, requires = "all")]
    pub eml: bool,
    /// With --all: only messages whose id was not downloaded into DIR before.
    #[arg(long = "new", requires = "all")]
    pub only_new: bool,
    /// Extract the attachments of retrieved messages into DIR.
    #[arg(long, value_name = "DIR")]
    pub save_attachments: Option<PathBuf>,
    /// Delete the retrieved messages from the server.
    #[arg(long)]
    pub delete: bool,
    /// TLS: STLS when offered (auto), STLS or fail, implicit TLS (a POP3S
    /// port), or none; certificates are checked against the network CA.
    #[arg(long, value_enum, default_value_t = mailnet::agent::submit::TlsChoice::Auto)]
    pub tls: mailnet::agent::submit::TlsChoice,
}

/// The file that remembers which ids `--all DIR` downloaded.
const SEEN_FILE: &str = ".mailnet-seen";

/// Runs `mailnet fetch`.
pub async fn run(args: &FetchArgs) -> anyhow::Result<()> {
    let domain = mailnet::smtp::address::domain_of(&args.user)
        .with_context(|| format!("--user {}: not an address", args.user))?;
    let password = match &args.password {
        Some(p) => p.clone(),
        None if std::io::stdin().is_terminal() => rpassword::prompt_password("Password: ")?,
        None => bail!("no password: give --password or MAILNET_PASSWORD"),
    };
    let server = locate(args.server.as_deref(), args.dns, "_pop3", &domain)
        .await
        .context("cannot find the server")
        .map_err(|e| super::agent_error(e, args.dns, args.server.is_some()))?;
    let connector = super::send::tls_connector(args.tls)?;
    let mut mailbox = Pop3Session::open_with(
        server,
        &args.user,
        &password,
        Duration::from_secs(30),
        args.tls,
        connector.as_ref(),
    )
    .await
    .map_err(|e| super::agent_error(e.into(), args.dns, args.server.is_some()))?;
    let entries = mailbox.list().await?;
    let mut retrieved: Vec<usize> = Vec::new();

    if let Some(n) = args.retr {
        let raw = mailbox.retr(n).await?;
        match &args.output {
            Some(path) => std::fs::write(path, &raw)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => std::io::stdout().write_all(&raw)?,
        }
        if let Some(dir) = &args.save_attachments {
            save_attachments(&raw, dir)?;
        }
        retrieved.push(n);
    } else if let Some(dir) = &args.all {
        retrieved = download_all(&mut mailbox, &entries, dir, args).await?;
    } else {
        for entry in &entries {
            let headers = mailbox.headers(entry.number).await?;
            let subject = mail_parser::MessageParser::default()
                .parse(&headers)
                .and_then(|m| m.subject().map(str::to_string))
                .unwrap_or_default();
            println!(
                "{:>4} {:>9} octets  {}  {subject}",
                entry.number, entry.size, entry.uid
            );
        }
        println!("{}", mailnet::text::count(entries.len() as u64, "message"));
    }

    if args.delete {
        for n in &retrieved {
            mailbox.dele(*n).await?;
        }
    }
    mailbox.quit().await?;
    if args.delete && !retrieved.is_empty() {
        eprintln!(
            "deleted {} from the server",
            mailnet::text::count(retrieved.len() as u64, "message")
        );
    }
    Ok(())
}

fn save_attachments(raw: &[u8], dir: &Path) -> anyhow::Result<()> {
    let (_, files) = mailnet::mime::describe(raw, Some(dir))?;
    for file in files {
        eprintln!("saved {}", file.display());
    }
    Ok(())
}

async fn download_all(
    mailbox: &mut Pop3Session,
    entries: &[Entry],
    dir: &Path,
    args: &FetchArgs,
) -> anyhow::Result<Vec<usize>> {
    let seen_path = dir.join(SEEN_FILE);
    let mut seen: HashSet<String> = std::fs::read_to_string(&seen_path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    if args.eml {
        std::fs::create_dir_all(dir)?;
    } else {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
    }
    let mut done = Vec::new();
    for entry in entries {
        if args.only_new && seen.contains(&entry.uid) {
            continue;
        }
        let raw = mailbox.retr(entry.number).await?;
        // Ids are printable and free of '/', but a foreign server's may not be.
        let id: String = entry
            .uid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = if args.eml {
            dir.join(format!("{}-{id}.eml", entry.number))
        } else {
            let tmp = dir.join("tmp").join(&id);
            std::fs::write(&tmp, &raw)?;
            let target = dir.join("new").join(&id);
            std::fs::rename(&tmp, &target)?;
            target
        };
        if args.eml {
            std::fs::write(&path, &raw)?;
        }
        println!("{}", path.display());
        if let Some(attachments) = &args.save_attachments {
            save_attachments(&raw, &attachments.join(&id))?;
        }
        seen.insert(entry.uid.clone());
        done.push(entry.number);
    }
    let mut list: Vec<&String> = seen.iter().collect();
    list.sort();
    std::fs::write(
        &seen_path,
        list.into_iter()
            .map(|s| format!("{s}\n"))
            .collect::<String>(),
    )?;
    eprintln!(
        "{} downloaded into {}",
        mailnet::text::count(done.len() as u64, "message"),
        dir.display()
    );
    Ok(done)
}
