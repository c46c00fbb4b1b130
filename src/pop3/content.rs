//! What goes on the wire for RETR and TOP: byte-stuffing and the first lines.

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
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
}

/// The header block, the blank line, and the first `lines` lines of the body (TOP).
pub fn top(message: &[u8], lines: usize) -> &[u8] {
    let mut offset = 0;
    let mut in_body = false;
    let mut body_lines = 0;
    for chunk in message.split_inclusive(|&b| b == b'\n') {
        if in_body {
            if body_lines == lines {
                break;
            }
            body_lines += 1;
        } else if chunk == b"\r\n" || chunk == b"\n" {
            in_body = true;
        }
        offset += chunk.len();
    }
    &message[..offset]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        stuffed(b"a\r\n.b\r\n..\r\n.\r\nend", &mut out);
        assert_eq!(out, b"a\r\n..b\r\n...\r\n..\r\nend\r\n.\r\n");
        let mut out = Vec::new();
        stuffed(b"", &mut out);
        assert_eq!(out, b".\r\n");
    }

    #[test]
    fn top_lines() {
        let msg = b"From: a\r\nSubject: s\r\n\r\n1\r\n2\r\n3\r\n";
        assert_eq!(top(msg, 0), b"From: a\r\nSubject: s\r\n\r\n");
        assert_eq!(top(msg, 2), b"From: a\r\nSubject: s\r\n\r\n1\r\n2\r\n");
        assert_eq!(top(msg, 99), msg);
    }
}
