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
        let Some(lf) = memchr::memchr(b'\n', input) else {
            if input.len() > limit {
                self.discarding = true;
                input.clear();
            }
            return None;
        };
        let line: Vec<u8> = input.drain(..=lf).collect();
        if std::mem::take(&mut self.discarding) || line.len() > limit {
            return Some(Framed::TooLong);
        }
        Some(Framed::Line(line))
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
    }
}
