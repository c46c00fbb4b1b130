//! Dot-stuffing (RFC 5321 §4.5.2, RFC 1939 §3): the same rule for a message
//! an SMTP client sends and a message a POP3 server returns.

/// Appends `message` to `out` byte-stuffed (a line starting with `.` gets one
/// more), ending in CRLF, followed by the terminating `.CRLF`.
pub fn stuffed(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for chunk in message.split_inclusive(|&b| b == b'\n') {
        if at_line_start && chunk.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(chunk);
        at_line_start = chunk.last() == Some(&b'\n');
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        if message.ends_with(b"\n") {
            out.pop();
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        stuffed(b"a\r\n.b\r\n..\r\n.\r\nend", &mut out);
        assert_eq!(out, b"a\r\n..b\r\n...\r\n..\r\nend\r\n.\r\n");
        let mut out = Vec::new();
        stuffed(b"", &mut out);
        assert_eq!(out, b".\r\n");
    }

    /// Undoes stuffing as a receiver does: drop the terminator, drop one
    /// leading dot from each line.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("terminated");
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    proptest! {
        /// Whatever the message, the terminator appears only at the end and a
        /// receiver gets the message back (with CRLF line ends).
        #[test]
        fn stuffing_round_trips(lines in proptest::collection::vec("[.a-z ]{0,6}", 0..8)) {
            let message = lines.iter().map(|l| format!("{l}\r\n")).collect::<String>();
            let mut wire = Vec::new();
            stuffed(message.as_bytes(), &mut wire);
            let text = String::from_utf8(wire.clone()).unwrap();
            prop_assert_eq!(text.find("\r\n.\r\n").map(|i| i + 5), (text.len() > 3).then_some(text.len()));
            prop_assert_eq!(unstuff(&wire), message.into_bytes());
        }
    }
}
