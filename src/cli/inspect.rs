//! `mailnet inspect`: headers and MIME parts of stored mail, attachments extracted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mailnet::mime::describe;

/// Runs `mailnet inspect`.
pub fn run(args: &super::InspectArgs) -> anyhow::Result<()> {
    let path = &args.path;
    if path.is_dir() && !path.join("cur").is_dir() && !path.join("new").is_dir() {
        return list_data(path);
    }
    if path.is_dir() {
        let mut files = Vec::new();
        for sub in ["cur", "new"] {
            if let Ok(entries) = std::fs::read_dir(path.join(sub)) {
                files.extend(entries.flatten().map(|e| e.path()));
            }
        }
        if files.is_empty() {
            anyhow::bail!(
                "{}: no messages (expected a Maildir with cur/ or new/)",
                path.display()
            );
        }
        files.sort();
        for (i, file) in files.iter().enumerate() {
            println!("== message {} ({})", i + 1, file.display());
            let raw =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let extract = args
                .extract
                .as_ref()
                .map(|d| d.join(format!("message-{}", i + 1)));
            print!("{}", describe(&raw, extract.as_deref())?.0);
        }
    } else {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        print!("{}", describe(&raw, args.extract.as_deref())?.0);
    }
    Ok(())
}

/// Lists a data directory (every server) or one server's folder: each
/// mailbox with its messages' sizes and subjects.
fn list_data(path: &Path) -> anyhow::Result<()> {
    let servers: Vec<PathBuf> = if path.join("mail").is_dir() {
        vec![path.to_path_buf()]
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("mail").is_dir())
            .collect();
        found.sort();
        found
    };
    if servers.is_empty() {
        anyhow::bail!(
            "{}: no mail here (expected a data directory, a server's folder, a Maildir or a message)",
            path.display()
        );
    }
    let mut out = std::io::stdout().lock();
    for server in servers {
        let name = server.file_name().unwrap_or_default().to_string_lossy();
        writeln!(out, "{name}")?;
        let mut mailboxes: Vec<PathBuf> = std::fs::read_dir(server.join("mail"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        mailboxes.sort();
        for mailbox in mailboxes {
            let mut files: Vec<PathBuf> = ["new", "cur"]
                .iter()
                .filter_map(|sub| std::fs::read_dir(mailbox.join(sub)).ok())
                .flat_map(|entries| entries.flatten().map(|e| e.path()))
                .collect();
            files.sort_by_key(|f| f.file_name().map(|n| n.to_os_string()));
            let total: u64 = files
                .iter()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum();
            let folder = mailbox.file_name().unwrap_or_default().to_string_lossy();
            writeln!(
                out,
                "  {folder}: {}, {total} octets",
                mailnet::text::count(files.len() as u64, "message")
            )?;
            for (i, file) in files.iter().enumerate() {
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                writeln!(
                    out,
                    "    {:>3}  {size:>9} octets  {}",
                    i + 1,
                    subject_of(file)
                )?;
            }
        }
    }
    Ok(())
}

/// A stored message's subject, read from its header block only.
fn subject_of(file: &Path) -> String {
    let mut head = Vec::with_capacity(8192);
    let _ = std::fs::File::open(file).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |p| p + 4);
    mail_parser::MessageParser::default()
        .parse_headers(&head[..end])
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| "(no subject)".to_string())
}
