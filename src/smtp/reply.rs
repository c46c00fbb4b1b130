//! SMTP replies: a code, an enhanced status code (RFC 3463) and text lines.

use std::borrow::Cow;
use std::fmt;

/// A reply's text lines. Nearly every reply has one line, and many a fixed
/// text: such a reply allocates nothing (a `Vec` and a `String` per reply
/// were a fifth of an SMTP session's allocations).
pub type ReplyLines = smallvec::SmallVec<[Cow<'static, str>; 1]>;

/// One (possibly multi-line) SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code, e.g. `"5.1.1"`; omitted on 220 and 354.
    pub enhanced: Option<&'static str>,
    /// Text lines; at least one.
    pub lines: ReplyLines,
}

impl Reply {
    /// A one-line reply with an enhanced code.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: smallvec::smallvec![text.into()],
        }
    }

    /// A one-line reply without an enhanced code (greeting, 354, AUTH challenges).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: smallvec::smallvec![text.into()],
        }
    }

    /// Whether the reply is a success (2xx or 3xx).
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The reply as it goes on the wire, CRLF-terminated lines.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.len() + 16).sum());
        self.write_wire(&mut out);
        out
    }

    /// Appends the reply as it goes on the wire to `out` (no formatting
    /// machinery: every reply of every session passes here).
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        for (prefix, enhanced, line) in self.parts() {
            out.extend_from_slice(&prefix);
            if let Some(enh) = enhanced {
                out.extend_from_slice(enh.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Records each line as sent, without its CRLF, as a server line of
    /// `transcript`: built in place, without going through
    /// [`fmt::Display`] and a copy to split.
    pub fn each_line(&self, transcript: &mut crate::transcript::Lines) {
        for (prefix, enhanced, line) in self.parts() {
            transcript.push_with(crate::transcript::Dir::Server, |out| {
                out.extend(prefix.map(char::from));
                if let Some(enh) = enhanced {
                    out.push_str(enh);
                    out.push(' ');
                }
                out.push_str(line);
            });
        }
    }

    /// Each line's parts: `250-` or `250 `, the enhanced code where it
    /// goes, and the text. The one place the wire form's rules live.
    fn parts(&self) -> impl Iterator<Item = ([u8; 4], Option<&'static str>, &str)> + '_ {
        let last = self.lines.len().saturating_sub(1);
        // Enhanced codes go on the lines of a reply unless they are an
        // EHLO keyword list.
        let enhanced = self
            .enhanced
            .filter(|_| self.code != 250 || self.lines.len() == 1);
        self.lines.iter().enumerate().map(move |(i, line)| {
            let prefix = [
                b'0' + (self.code / 100 % 10) as u8,
                b'0' + (self.code / 10 % 10) as u8,
                b'0' + (self.code % 10) as u8,
                if i == last { b' ' } else { b'-' },
            ];
            (prefix, enhanced, line.as_ref())
        })
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wire = Vec::new();
        self.write_wire(&mut wire);
        f.write_str(&String::from_utf8_lossy(&wire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        assert_eq!(
            Reply::new(550, "5.1.1", "No such user").to_string(),
            "550 5.1.1 No such user\r\n"
        );
        assert_eq!(
            Reply::plain(220, "mx ESMTP").to_string(),
            "220 mx ESMTP\r\n"
        );
        let ehlo = Reply {
            code: 250,
            enhanced: Some("2.0.0"),
            lines: smallvec::smallvec!["mx Hello".into(), "PIPELINING".into()],
        };
        assert_eq!(ehlo.to_string(), "250-mx Hello\r\n250 PIPELINING\r\n");
        // The transcript's lines are the wire's, without CRLF.
        for reply in [&ehlo, &Reply::new(550, "5.1.1", "No such user")] {
            let mut recorded = crate::transcript::Lines::default();
            reply.each_line(&mut recorded);
            let lines: Vec<String> = recorded.take().into_iter().map(|l| l.text).collect();
            assert_eq!(lines.join("\r\n") + "\r\n", reply.to_string());
        }
        let help = Reply {
            code: 214,
            enhanced: Some("2.0.0"),
            lines: smallvec::smallvec!["a".into(), "b".into()],
        };
        assert_eq!(help.to_string(), "214-2.0.0 a\r\n214 2.0.0 b\r\n");
        for reply in [help, ehlo, Reply::plain(354, "go ahead")] {
            assert_eq!(reply.to_wire(), reply.to_string().into_bytes());
        }
    }
}
