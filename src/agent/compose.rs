//! A draft message and the RFC 5322/MIME message built from it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::headers::address::Address;
use mail_builder::MessageBuilder;

use crate::smtp::address::split_address;

/// What the user typed or passed as flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    /// The sender.
    pub from: String,
    /// Visible recipients.
    pub to: Vec<String>,
    /// Copied recipients.
    pub cc: Vec<String>,
    /// Hidden recipients: in the envelope, not in the headers.
    pub bcc: Vec<String>,
    /// The subject, any Unicode (RFC 2047 encoded when needed).
    pub subject: String,
    /// The text, sent as `text/plain; charset=utf-8`.
    pub body: String,
    /// Files to attach.
    pub attachments: Vec<PathBuf>,
    /// Extra header fields, `(name, value)`, as swaks's `--header` adds them.
    pub headers: Vec<(String, String)>,
}

/// A draft that cannot be sent, said before any connection is made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ComposeError {
    /// An address is not `local@domain`.
    #[error("bad address syntax: {0:?}")]
    BadAddress(String),
    /// No recipient at all.
    #[error("no recipient: give at least one To, Cc or Bcc address")]
    NoRecipient,
    /// An attachment cannot be read.
    #[error("attachment {0}: {1}")]
    Attachment(String, String),
    /// An extra header field is not `Name: value`.
    #[error("header {0:?}: expected `Name: value` (a name of letters, digits and dashes)")]
    BadHeader(String),
}

/// Reads `Name: value` as a header field (swaks's `--header`).
pub fn header_field(text: &str) -> Result<(String, String), ComposeError> {
    let bad = || ComposeError::BadHeader(text.to_string());
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let good_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    // A line end in the value would start a header of its own.
    if !good_name || value.contains(['\r', '\n']) {
        return Err(bad());
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Strips `Name <addr>` and `<addr>` down to `addr`.
pub fn bare_address(text: &str) -> &str {
    let text = text.trim();
    match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => text[open + 1..close].trim(),
        _ => text,
    }
}

/// Splits a comma-separated list of addresses.
pub fn address_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

impl Draft {
    /// Every envelope recipient: To, Cc and Bcc, bare addresses.
    pub fn recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|a| bare_address(a).to_string())
            .collect()
    }

    /// Checks everything that can be checked before connecting.
    pub fn validate(&self) -> Result<(), ComposeError> {
        for address in std::iter::once(&self.from)
            .chain(&self.to)
            .chain(&self.cc)
            .chain(&self.bcc)
        {
            if split_address(bare_address(address)).is_none() {
                return Err(ComposeError::BadAddress(address.clone()));
            }
        }
        if self.recipients().is_empty() {
            return Err(ComposeError::NoRecipient);
        }
        for path in &self.attachments {
            if let Err(e) = std::fs::metadata(path).and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            }) {
                return Err(ComposeError::Attachment(
                    path.display().to_string(),
                    e.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The message: `Date`, `Message-ID`, `From`, `To`, `Cc`, `Subject`, a
    /// UTF-8 text part, and, with attachments, `multipart/mixed` with each
    /// file base64-encoded under a guessed content type.
    pub fn build(&self, now: SystemTime) -> Result<Vec<u8>, ComposeError> {
        self.validate()?;
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let domain = split_address(bare_address(&self.from))
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        let list = |items: &[String]| {
            Address::new_list(
                items
                    .iter()
                    .map(|a| Address::from(bare_address(a).to_string()))
                    .collect(),
            )
        };
        let mut builder = MessageBuilder::new()
            .from(bare_address(&self.from).to_string())
            .to(list(&self.to))
            .subject(self.subject.clone())
            .date(secs)
            .message_id(format!("{nanos}.{}@{domain}", std::process::id()))
            .text_body(self.body.replace("\r\n", "\n").replace('\n', "\r\n"));
        if !self.cc.is_empty() {
            builder = builder.cc(list(&self.cc));
        }
        for (name, value) in &self.headers {
            builder = builder.header(
                name.clone(),
                mail_builder::headers::raw::Raw::new(value.clone()),
            );
        }
        for path in &self.attachments {
            let bytes = std::fs::read(path)
                .map_err(|e| ComposeError::Attachment(path.display().to_string(), e.to_string()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            builder = builder.attachment(content_type_of(path), name, bytes);
        }
        builder
            .write_to_vec()
            .map_err(|e| ComposeError::Attachment("message".into(), e.to_string()))
    }
}

/// A content type from a file name's extension.
pub fn content_type_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "json" => "application/json",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    #[test]
    fn builds_a_mime_message_that_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("pic.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nbinary\0data").unwrap();
        let draft = Draft {
            from: "jasleen@cs.unc.edu".into(),
            to: vec![
                "smithfd@cs.unc.edu".into(),
                "Jeffay <jeffay@cs.unc.edu>".into(),
            ],
            bcc: vec!["hidden@cs.unc.edu".into()],
            subject: "Grüße".into(),
            body: "line one\n.line two\n".into(),
            attachments: vec![png.clone()],
            ..Draft::default()
        };
        let raw = draft.build(SystemTime::now()).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains("hidden@cs.unc.edu"),
            "Bcc never appears in the headers"
        );
        let msg = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(msg.subject(), Some("Grüße"));
        assert_eq!(
            msg.body_text(0).unwrap().replace("\r\n", "\n"),
            "line one\n.line two\n"
        );
        let attachment = msg.attachments().next().unwrap();
        assert_eq!(attachment.attachment_name(), Some("pic.png"));
        assert_eq!(attachment.contents(), b"\x89PNG\r\n\x1a\nbinary\0data");
        assert!(msg.message_id().unwrap().ends_with("@cs.unc.edu"));
        assert_eq!(draft.recipients().len(), 3);
    }

    #[test]
    fn bad_input_is_refused_before_connecting() {
        let base = Draft {
            from: "a@b.c".into(),
            to: vec!["d@e.f".into()],
            ..Draft::default()
        };
        assert_eq!(
            Draft {
                from: "nobody".into(),
                ..base.clone()
            }
            .validate(),
            Err(ComposeError::BadAddress("nobody".into()))
        );
        assert_eq!(
            Draft {
                to: vec![],
                ..base.clone()
            }
            .validate(),
            Err(ComposeError::NoRecipient)
        );
        assert_eq!(
            header_field("X-Foo:  bar baz "),
            Ok(("X-Foo".to_string(), "bar baz".to_string()))
        );
        assert!(header_field("no colon").is_err());
        assert!(header_field("Bad Name: x").is_err());
        assert!(header_field("X-Smuggle: a\r\nBcc: x@y.z").is_err());
        let with_header = Draft {
            headers: vec![("X-Foo".into(), "bar".into())],
            ..base.clone()
        };
        let raw = with_header.build(SystemTime::now()).unwrap();
        assert!(String::from_utf8_lossy(&raw).contains("\r\nX-Foo: bar\r\n"));
        let missing = Draft {
            attachments: vec!["/no/such/file".into()],
            ..base
        };
        assert!(matches!(
            missing.validate(),
            Err(ComposeError::Attachment(..))
        ));
    }
}
