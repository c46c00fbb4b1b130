//! What TOP sends: the header block and the first lines of the body.

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
    fn top_lines() {
        let msg = b"From: a\r\nSubject: s\r\n\r\n1\r\n2\r\n3\r\n";
        assert_eq!(top(msg, 0), b"From: a\r\nSubject: s\r\n\r\n");
        assert_eq!(top(msg, 2), b"From: a\r\nSubject: s\r\n\r\n1\r\n2\r\n");
        assert_eq!(top(msg, 99), msg);
    }
}
