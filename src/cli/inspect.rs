//! `mailnet inspect`: headers and MIME parts of stored mail, attachments extracted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// Describes one message; writes its attachments into `extract` when given.
/// Returns the text and the files written.
pub fn describe(raw: &[u8], extract: Option<&Path>) -> anyhow::Result<(String, Vec<PathBuf>)> {
    let message = MessageParser::default()
        .parse(raw)
        .context("not a parsable RFC 5322 message")?;
    let mut out = String::new();
    let address = |a: Option<&mail_parser::Address<'_>>| {
        a.map(|a| {
            a.iter()
                .map(|x| match (x.name(), x.address()) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (None, Some(e)) => e.to_string(),
                    (Some(n), None) => n.to_string(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let _ = writeln!(out, "From:    {}", address(message.from()));
    let _ = writeln!(out, "To:      {}", address(message.to()));
    let _ = writeln!(out, "Subject: {}", message.subject().unwrap_or(""));
    if let Some(date) = message.date() {
        let _ = writeln!(out, "Date:    {}", date.to_rfc822());
    }
    let _ = writeln!(out, "Size:    {} octets", raw.len());
    let _ = writeln!(out, "Parts:");
    for (i, part) in message.parts.iter().enumerate() {
        let ctype = part
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .unwrap_or_else(|| "text/plain".into());
        let (kind, len) = match &part.body {
            PartType::Text(t) | PartType::Html(t) => ("text", t.len()),
            PartType::Binary(b) | PartType::InlineBinary(b) => ("binary", b.len()),
            PartType::Message(m) => ("message", m.raw_message().len()),
            PartType::Multipart(_) => ("multipart", 0),
        };
        let name = part
            .attachment_name()
            .map(|n| format!(" name=\"{n}\""))
            .unwrap_or_default();
        let _ = writeln!(out, "  [{i}] {ctype} ({kind}, {len} octets){name}");
    }
    let mut written = Vec::new();
    let attachments: Vec<_> = message.attachments().collect();
    let _ = writeln!(out, "Attachments: {}", attachments.len());
    if let Some(dir) = extract {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, part) in attachments.iter().enumerate() {
            let name = safe_file_name(part.attachment_name().unwrap_or(""), i);
            let path = unique_path(dir, &name);
            std::fs::write(&path, part.contents())
                .with_context(|| format!("cannot write {}", path.display()))?;
            let _ = writeln!(
                out,
                "  extracted {} ({} octets)",
                path.display(),
                part.contents().len()
            );
            written.push(path);
        }
    }
    Ok((out, written))
}

/// A file name from an attachment name that cannot leave its folder.
fn safe_file_name(name: &str, index: usize) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim_start_matches('.').trim();
    if cleaned.is_empty() {
        format!("attachment-{}", index + 1)
    } else {
        cleaned.to_string()
    }
}

fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.join(name);
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{n}-{name}"));
    }
    path
}

/// Runs `mailnet inspect`.
pub fn run(args: &super::InspectArgs) -> anyhow::Result<()> {
    let path = &args.path;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_cannot_escape() {
        assert_eq!(safe_file_name("../../etc/passwd", 0), "passwd");
        assert_eq!(safe_file_name("..", 1), "attachment-2");
        assert_eq!(safe_file_name("a\\b.png", 0), "b.png");
        assert_eq!(safe_file_name("", 2), "attachment-3");
    }
}
