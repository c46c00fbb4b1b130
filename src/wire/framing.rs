//! Cutting a command stream into lines, with a bound: a line longer than the
//! limit is dropped up to its end and reported once, never buffered whole.

/// What [`LineFramer::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A complete line, line end included.
    Line(Vec<u8>),
    /// A line longer than the limit ended; its bytes were dropped.
    TooLong,
}

/// Command-line framing state: whether the bytes being received belong to a
/// line already known to be too long.
#[derive(Debug, Default)]
pub struct LineFramer {
    discarding: bool,
}

impl LineFramer {
    /// Takes the next complete line out of `input`, or `None` when more bytes
    /// are needed. An unterminated line over `limit` is dropped as it arrives,
    /// so the buffer never holds more than `limit` bytes of one line.
    pub fn next_line(&mut self, input: &mut Vec<u8>, limit: usize) -> Option<Framed> {
        let mut line = Vec::new();
        Some(match self.next_line_into(input, limit, &mut line)? {
            true => Framed::Line(line),
            false => Framed::TooLong,
        })
    }

    /// [`LineFramer::next_line`] into `line` (cleared first), whose memory
    /// is used again: a session reads its commands into one buffer.
    /// `Some(true)` for a line, `Some(false)` for a line too long.
    pub fn next_line_into(
        &mut self,
        input: &mut Vec<u8>,
        limit: usize,
        line: &mut Vec<u8>,
    ) -> Option<bool> {
        let Some(lf) = memchr::memchr(b'\n', input) else {
            if input.len() > limit {
                self.discarding = true;
                input.clear();
            }
            return None;
        };
        line.clear();
        let too_long = std::mem::take(&mut self.discarding) || lf + 1 > limit;
        if !too_long {
            line.extend_from_slice(&input[..=lf]);
        }
        input.drain(..=lf);
        Some(!too_long)
    }

    /// Whether part of a line is waiting for its end (the session loop's
    /// whole-line deadline runs while it is).
    pub fn mid_line(&self, input: &[u8]) -> bool {
        self.discarding || !input.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_dropped_and_reported_once() {
        let mut framer = LineFramer::default();
        let mut input = b"ab".repeat(10);
        assert_eq!(framer.next_line(&mut input, 8), None);
        assert!(input.is_empty(), "an over-long line is not kept");
        input.extend_from_slice(b"cd\r\nNOOP\r\n");
        assert_eq!(framer.next_line(&mut input, 8), Some(Framed::TooLong));
        assert_eq!(
            framer.next_line(&mut input, 8),
            Some(Framed::Line(b"NOOP\r\n".to_vec()))
        );
        assert_eq!(framer.next_line(&mut input, 8), None);

        // Into a reused buffer, the same.
        let mut framer = LineFramer::default();
        let mut input = b"ab".repeat(10);
        let mut line = b"old".to_vec();
        assert_eq!(framer.next_line_into(&mut input, 8, &mut line), None);
        input.extend_from_slice(b"cd\r\nNOOP\r\nQU");
        assert_eq!(framer.next_line_into(&mut input, 8, &mut line), Some(false));
        assert_eq!(framer.next_line_into(&mut input, 8, &mut line), Some(true));
        assert_eq!(line, b"NOOP\r\n");
        assert_eq!(framer.next_line_into(&mut input, 8, &mut line), None);
        assert_eq!(input, b"QU");
    }
}
