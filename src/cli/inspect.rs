//! `mailnet inspect`: headers and MIME parts of stored mail, attachments extracted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mailnet::mime::describe;

/// Runs `mailnet inspect`.
pub fn run(args: &super::InspectArgs) -> anyhow::Result<()> {
    let path = &args.path;
    if path.is_dir() {
        let journalled = journalled_in(path);
        let mailbox = path.join("cur").is_dir()
            || path.join("new").is_dir()
            || journalled.as_ref().is_ok_and(|found| !found.is_empty());
        if !mailbox {
            return list_data(path);
        }
        let journalled = journalled
            .with_context(|| format!("cannot read the delivery journal of {}", path.display()))?;
        let messages = maildir_messages(path, journalled);
        if messages.is_empty() {
            anyhow::bail!(
                "{}: no messages (expected a Maildir with cur/ or new/)",
                path.display()
            );
        }
        for (i, message) in messages.iter().enumerate() {
            println!("== message {} ({})", i + 1, message.label());
            let raw = message.bytes()?;
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
        // The journal read once for the whole server, its records by folder.
        // A mailbox whose first message is still there has no folder yet.
        let mut journalled: std::collections::HashMap<String, Vec<_>> = Default::default();
        for message in mailnet::store::journalled(&server.join("mail"))? {
            let folder = server.join("mail").join(&message.folder);
            if !mailboxes.contains(&folder) {
                mailboxes.push(folder);
            }
            journalled
                .entry(message.folder.clone())
                .or_default()
                .push(message);
        }
        mailboxes.sort();
        for mailbox in mailboxes {
            let folder = mailbox.file_name().unwrap_or_default().to_string_lossy();
            let pending = journalled.remove(folder.as_ref()).unwrap_or_default();
            let messages = maildir_messages(&mailbox, pending);
            let sizes: Vec<u64> = messages.iter().map(Message::size).collect();
            let total: u64 = sizes.iter().sum();
            writeln!(
                out,
                "  {folder}: {}, {total} octets",
                mailnet::text::count(messages.len() as u64, "message")
            )?;
            for (i, (message, size)) in messages.iter().zip(sizes).enumerate() {
                writeln!(
                    out,
                    "    {:>3}  {size:>9} octets  {}",
                    i + 1,
                    message.subject()
                )?;
            }
        }
    }
    Ok(())
}

/// A message of a mailbox: its file, or its record in the server's
/// delivery journal (accepted, its file not made yet).
enum Message {
    File(PathBuf),
    Journalled(mailnet::store::Journalled),
}

impl Message {
    fn name(&self) -> std::ffi::OsString {
        match self {
            Message::File(path) => path.file_name().unwrap_or_default().to_os_string(),
            Message::Journalled(j) => j.name.clone().into(),
        }
    }

    fn label(&self) -> String {
        match self {
            Message::File(path) => path.display().to_string(),
            Message::Journalled(j) => format!("{}, in the delivery journal", j.name),
        }
    }

    fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            Message::File(path) => {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            }
            Message::Journalled(j) => Ok(j.bytes.clone()),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Message::File(path) => path.metadata().map(|m| m.len()).unwrap_or(0),
            Message::Journalled(j) => j.bytes.len() as u64,
        }
    }

    fn subject(&self) -> String {
        match self {
            Message::File(path) => {
                let mut head = Vec::with_capacity(8192);
                let _ = std::fs::File::open(path)
                    .and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
                subject_of(&head)
            }
            Message::Journalled(j) => subject_of(&j.bytes),
        }
    }
}

/// The journal records of the Maildir at `mailbox` (`<mail root>/<folder>`).
fn journalled_in(mailbox: &Path) -> std::io::Result<Vec<mailnet::store::Journalled>> {
    let (Some(root), Some(folder)) = (mailbox.parent(), mailbox.file_name()) else {
        return Ok(Vec::new());
    };
    let mut found = mailnet::store::journalled(root)?;
    found.retain(|j| folder == std::ffi::OsStr::new(&j.folder));
    Ok(found)
}

/// Every message of the Maildir at `mailbox`, in delivery order (file
/// names start with the delivery time): its files in `new/` and `cur/`,
/// and `journalled`, what the server's delivery journal still holds for
/// it (those already placed counted once).
fn maildir_messages(mailbox: &Path, journalled: Vec<mailnet::store::Journalled>) -> Vec<Message> {
    let mut messages: Vec<Message> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(mailbox.join(sub)).ok())
        .flat_map(|entries| entries.flatten().map(|e| Message::File(e.path())))
        .collect();
    let placed: std::collections::HashSet<String> = messages
        .iter()
        .map(|m| {
            let name = m.name().to_string_lossy().into_owned();
            name.split(':').next().unwrap_or_default().to_string()
        })
        .collect();
    messages.extend(
        journalled
            .into_iter()
            .filter(|j| !placed.contains(&j.name))
            .map(Message::Journalled),
    );
    messages.sort_by_key(Message::name);
    messages
}

/// A stored message's subject, read from its header block only.
fn subject_of(head: &[u8]) -> String {
    let head = &head[..head.len().min(64 * 1024)];
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |p| p + 4);
    mail_parser::MessageParser::default()
        .parse_headers(&head[..end])
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| "(no subject)".to_string())
}
