//! Reading the message after `DATA`: undoing dot-stuffing, finding the
//! `<CRLF>.<CRLF>` end, and enforcing the size and text-line limits, one chunk
//! at a time however the bytes are split.

/// Why a message read to its end is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than the server's maximum size.
    TooLarge,
    /// A text line longer than the maximum text line.
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    LineStart,
    Dot,
    DotCr,
    InLine,
}

/// The state of one message being received.
#[derive(Debug)]
pub struct DataReader {
    scan: Scan,
    line_len: usize,
    max_line: usize,
    max_size: usize,
    body: Vec<u8>,
    refusal: Option<Refusal>,
}

impl DataReader {
    /// A reader for a message of at most `max_size` octets with lines of at most `max_line`.
    pub fn new(max_size: usize, max_line: usize) -> DataReader {
        DataReader {
            scan: Scan::LineStart,
            line_len: 0,
            max_line,
            max_size,
            body: Vec::new(),
            refusal: None,
        }
    }

    /// Consumes `input`; returns how many bytes were used when the end of the
    /// message was found (what follows belongs to the next command), or `None`
    /// when all of `input` was message.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.scan {
                Scan::LineStart if input[i] == b'.' => {
                    self.scan = Scan::Dot;
                    i += 1;
                }
                Scan::LineStart => self.scan = Scan::InLine,
                Scan::Dot => match input[i] {
                    b'\r' => {
                        self.scan = Scan::DotCr;
                        i += 1;
                    }
                    b'\n' => return Some(i + 1),
                    // A leading dot before other text was stuffing: drop it.
                    _ => {
                        self.line_len = 1;
                        self.scan = Scan::InLine;
                    }
                },
                Scan::DotCr => {
                    if input[i] == b'\n' {
                        return Some(i + 1);
                    }
                    self.line_len = 2;
                    self.push(b"\r");
                    self.scan = Scan::InLine;
                }
                Scan::InLine => {
                    let rest = &input[i..];
                    let (chunk, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                        Some(p) => (&rest[..=p], true),
                        None => (rest, false),
                    };
                    self.line_len += chunk.len();
                    if self.line_len > self.max_line && self.refusal.is_none() {
                        self.refusal = Some(Refusal::LineTooLong);
                    }
                    self.push(chunk);
                    i += chunk.len();
                    if ends_line {
                        self.scan = Scan::LineStart;
                        self.line_len = 0;
                    }
                }
            }
        }
        None
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.body.len() + bytes.len() > self.max_size {
            self.refusal.get_or_insert(Refusal::TooLarge);
            // Keep reading to the end marker, but stop storing.
            return;
        }
        if self.refusal.is_none() {
            self.body.extend_from_slice(bytes);
        }
    }

    /// The message, or why it is refused. Call once `feed` found the end.
    pub fn finish(self) -> Result<Vec<u8>, Refusal> {
        match self.refusal {
            Some(r) => Err(r),
            None => Ok(self.body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in_chunks(wire: &[u8], chunk: usize) -> (Result<Vec<u8>, Refusal>, usize) {
        let mut reader = DataReader::new(1 << 20, 1000);
        let mut offset = 0;
        for piece in wire.chunks(chunk) {
            if let Some(used) = reader.feed(piece) {
                return (reader.finish(), offset + used);
            }
            offset += piece.len();
        }
        panic!("no end found");
    }

    #[test]
    fn unstuffs_and_stops_at_the_end_whatever_the_chunking() {
        let wire = b"Subject: x\r\n\r\n..hidden dot\r\n.\r\n..\r\nlast\r\n.\r\nQUIT\r\n";
        for chunk in [1, 2, 3, 4, 7, 16, 512] {
            let (body, used) = read_in_chunks(wire, chunk);
            assert_eq!(
                body.unwrap(),
                b"Subject: x\r\n\r\n.hidden dot\r\n",
                "chunk {chunk}"
            );
            assert_eq!(
                &wire[used..],
                b"..\r\nlast\r\n.\r\nQUIT\r\n",
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn empty_message_and_bare_lf() {
        assert_eq!(read_in_chunks(b".\r\n", 1).0.unwrap(), b"");
        assert_eq!(read_in_chunks(b"a\n.\n", 1).0.unwrap(), b"a\n");
    }

    #[test]
    fn limits() {
        let mut reader = DataReader::new(10, 1000);
        assert_eq!(reader.feed(b"0123456789abc\r\n.\r\n"), Some(18));
        assert_eq!(reader.finish(), Err(Refusal::TooLarge));
        let mut reader = DataReader::new(1 << 20, 8);
        assert!(reader.feed(b"0123456789\r\n.\r\n").is_some());
        assert_eq!(reader.finish(), Err(Refusal::LineTooLong));
    }
}
