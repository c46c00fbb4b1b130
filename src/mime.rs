//! Looking inside a stored message: its headers, its MIME parts, and its
//! attachments written out under names that cannot leave their folder.
//! `mailnet inspect` prints this; tests and the grader use it too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// Why a message could not be described.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// mail-parser could not read it.
    #[error("not a parsable RFC 5322 message")]
    Unparsable,
    /// An attachment could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Describes one message; writes its attachments into `extract` when given.
/// Returns the text and the files written.
pub fn describe(
    raw: &[u8],
    extract: Option<&Path>,
) -> Result<(String, Vec<PathBuf>), InspectError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(InspectError::Unparsable)?;
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
        std::fs::create_dir_all(dir).map_err(|source| InspectError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        for (i, part) in attachments.iter().enumerate() {
            let name = safe_file_name(part.attachment_name().unwrap_or(""), i);
            let path = unique_path(dir, &name);
            std::fs::write(&path, part.contents()).map_err(|source| InspectError::Write {
                path: path.clone(),
                source,
            })?;
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
