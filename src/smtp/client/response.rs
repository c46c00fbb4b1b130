//! A reply as the client reads it: parsed by smtp-proto's `ResponseReceiver`,
//! kept with its lines for transcripts and diagnostics.

use std::fmt;

use smtp_proto::response::parser::ResponseReceiver;

use super::ClientError;

/// A reply from a server: its code, its enhanced status code when it gave
/// one, and its text lines (without code or enhanced code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The three-digit code.
    pub code: u16,
    /// The RFC 3463 enhanced status code, e.g. `[5, 1, 1]`.
    pub status: Option<[u8; 3]>,
    /// The text of each line.
    pub lines: Vec<String>,
}

impl Response {
    /// `2xx` or `3xx`.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// `4xx`: try again later.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The enhanced status code as text, or the class's generic one
    /// (`4.0.0`, `5.0.0`) when the server gave none.
    pub fn status_text(&self) -> String {
        match self.status {
            Some([a, b, c]) => format!("{a}.{b}.{c}"),
            None => format!("{}.0.0", self.code / 100),
        }
    }

    /// The text of every line, joined by spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

impl fmt::Display for Response {
    /// `550 5.1.1 <x@y>: User unknown`: code, enhanced code, text on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some([a, b, c]) = self.status {
            write!(f, " {a}.{b}.{c}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Feeds reply lines to smtp-proto's parser until a reply is complete.
#[derive(Default)]
pub(super) struct Parser {
    receiver: ResponseReceiver,
}

impl Parser {
    /// Takes one line (line end included); `Some` once the last line of the reply arrived.
    pub(super) fn feed(&mut self, line: &[u8]) -> Result<Option<Response>, ClientError> {
        let malformed = || {
            ClientError::Malformed(
                String::from_utf8_lossy(line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            )
        };
        // smtp-proto accepts a bare code line ("250\r\n") but not a line
        // whose fourth octet is neither separator nor line end.
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(malformed());
        }
        match self.receiver.parse(&mut line.iter()) {
            Ok(reply) => {
                let status = (reply.esc != [0, 0, 0]).then_some(reply.esc);
                Ok(Some(Response {
                    code: reply.code,
                    status,
                    lines: reply.message.split('\n').map(str::to_string).collect(),
                }))
            }
            Err(smtp_proto::Error::NeedsMoreData { .. }) => Ok(None),
            Err(_) => Err(malformed()),
        }
    }
}

/// What a server offered in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920 PIPELINING.
    pub pipelining: bool,
    /// AUTH PLAIN offered.
    pub auth_plain: bool,
    /// AUTH LOGIN offered.
    pub auth_login: bool,
    /// STARTTLS offered.
    pub starttls: bool,
    /// The SIZE limit, when declared.
    pub size: Option<usize>,
    /// RFC 6152 8BITMIME.
    pub eight_bit_mime: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
}

impl Capabilities {
    /// Reads the keywords after the first line of a `250` EHLO reply.
    pub fn from_ehlo(reply: &Response) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()),
                "AUTH" => {
                    for mechanism in words {
                        match mechanism.to_ascii_uppercase().as_str() {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }
}
