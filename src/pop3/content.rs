//! What RETR and TOP send: a message dot-stuffed, RETR's a part at a time.

use std::io::{self, Read};

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

/// A message file sent dot-stuffed a part at a time, so a session holds one
/// part of a message however large it is. The wire form is exactly
/// [`crate::wire::stuffed`]'s: a dot doubled at the start of a line, a
/// final line end supplied, and the `.` terminator.
pub struct Retrieval<R> {
    source: R,
    /// Read from `source`, not yet sent.
    part: Vec<u8>,
    /// Whether the next byte sent starts a line.
    at_line_start: bool,
    /// The message's last byte read so far, held back: at the end it
    /// decides how the message is terminated.
    held: Option<u8>,
    /// The byte sent before `held`.
    before_held: u8,
    done: bool,
}

impl<R: Read> Retrieval<R> {
    /// Sends `source` in parts of about `part` octets.
    pub fn new(source: R, part: usize) -> Retrieval<R> {
        Retrieval {
            source,
            part: vec![0; part.max(2)],
            at_line_start: true,
            held: None,
            before_held: 0,
            done: false,
        }
    }

    /// Whether the terminator was sent.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads the next part and appends it to `out`, stuffed; after the last
    /// part, the terminator.
    pub fn next_part(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        let read = loop {
            match self.source.read(&mut self.part) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if read == 0 {
            self.finish(out);
            return Ok(());
        }
        let last = self.part[read - 1];
        if let Some(held) = self.held.replace(last) {
            self.emit(&[held], out);
        }
        let part = std::mem::take(&mut self.part);
        self.emit(&part[..read - 1], out);
        self.part = part;
        Ok(())
    }

    /// Appends `bytes`, stuffed.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = bytes.last() else {
            return;
        };
        let dotted = has_line_dot(bytes) || (self.at_line_start && bytes[0] == b'.');
        if dotted {
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                if self.at_line_start && line[0] == b'.' {
                    out.push(b'.');
                }
                out.extend_from_slice(line);
                self.at_line_start = line.last() == Some(&b'\n');
            }
        } else {
            out.extend_from_slice(bytes);
        }
        self.at_line_start = last == b'\n';
        self.before_held = last;
    }

    /// The held last byte, a line end if the message lacked one, the terminator.
    fn finish(&mut self, out: &mut Vec<u8>) {
        match self.held.take() {
            None => {}
            Some(b'\n') if self.before_held == b'\r' => out.push(b'\n'),
            // A bare LF at the very end is sent as CRLF.
            Some(b'\n') => out.extend_from_slice(b"\r\n"),
            Some(byte) => {
                self.emit(&[byte], out);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b".\r\n");
        self.done = true;
    }
}

/// Whether a `.` follows a line end anywhere in `bytes`: scanned in blocks
/// without early exits, which the compiler vectorises (mail rarely has one).
fn has_line_dot(bytes: &[u8]) -> bool {
    if bytes.len() < 2 {
        return false;
    }
    let (ends, next) = (&bytes[..bytes.len() - 1], &bytes[1..]);
    ends.chunks(256).zip(next.chunks(256)).any(|(ends, next)| {
        ends.iter().zip(next).fold(false, |found, (&a, &b)| {
            found | ((a == b'\n') & (b == b'.'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn top_lines() {
        let msg = b"From: a\r\nSubject: s\r\n\r\n1\r\n2\r\n3\r\n";
        assert_eq!(top(msg, 0), b"From: a\r\nSubject: s\r\n\r\n");
        assert_eq!(top(msg, 2), b"From: a\r\nSubject: s\r\n\r\n1\r\n2\r\n");
        assert_eq!(top(msg, 99), msg);
    }

    fn sent_in_parts(message: &[u8], part: usize) -> Vec<u8> {
        let mut retrieval = Retrieval::new(message, part);
        let mut out = Vec::new();
        while !retrieval.is_done() {
            let before = out.len();
            retrieval.next_part(&mut out).unwrap();
            assert!(out.len() - before <= 2 * part + 5, "one part at a time");
        }
        out
    }

    #[test]
    fn parts_send_what_the_whole_message_would() {
        for message in [
            &b""[..],
            b".",
            b"\n",
            b"a\n",
            b"a\r\n",
            b"a",
            b"..\r\n.\r\n.x\r\nend",
            b"x\r\n.\r\n",
            b"a\r\n.b\r\n..\r\n.\r\nend",
        ] {
            let mut whole = Vec::new();
            crate::wire::stuffed(message, &mut whole);
            for part in [1, 2, 3, 5, 64, 4096] {
                assert_eq!(
                    String::from_utf8_lossy(&sent_in_parts(message, part)),
                    String::from_utf8_lossy(&whole),
                    "{message:?} in parts of {part}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn any_message_in_any_parts(message in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..600),
            part in 1usize..300)
        {
            let mut whole = Vec::new();
            crate::wire::stuffed(&message, &mut whole);
            prop_assert_eq!(sent_in_parts(&message, part), whole);
        }
    }
}
