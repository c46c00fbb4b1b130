//! Reading the message after `DATA`: undoing dot-stuffing, finding the
//! `<CRLF>.<CRLF>` end, and enforcing the size and text-line limits, one chunk
//! at a time however the bytes are split.
//!
//! The reader never holds the message: what it decodes waits in a small
//! buffer that the I/O layer drains to disk after every read, so a session's
//! memory is bounded by its read size whatever the message size. What the
//! session needs once the message is complete (its size, its `Received:`
//! count for loop detection, a preview for the transcript) is counted on the
//! way through.

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

/// What is known about a message read to its end, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    /// Octets as stored (line ends normalised to CRLF).
    pub size: u64,
    /// Lines in the message.
    pub lines: u64,
    /// `Received:` fields in the header block (hops so far).
    pub received: usize,
    /// The first few lines, for the transcript.
    pub preview: Vec<u8>,
}

/// Lines kept in [`MessageFacts::preview`].
const PREVIEW_LINES: u64 = 4;
/// Octets kept in [`MessageFacts::preview`] at most.
const PREVIEW_BYTES: usize = 1024;

/// The state of one message being received.
#[derive(Debug)]
pub struct DataReader {
    scan: Scan,
    line_len: usize,
    max_line: usize,
    max_size: u64,
    /// Decoded bytes not yet taken by [`DataReader::take_decoded`].
    decoded: Vec<u8>,
    /// The last byte decoded, to write a bare LF as CRLF across chunks.
    last: u8,
    /// The last byte received, to tell a CRLF line end from a bare LF
    /// across chunks.
    raw_last: u8,
    refusal: Option<Refusal>,
    size: u64,
    lines: u64,
    in_header: bool,
    /// The start of the current line, enough to recognise `Received:`.
    head: [u8; 9],
    head_len: usize,
    received: usize,
    preview: Vec<u8>,
}

impl DataReader {
    /// A reader for a message of at most `max_size` octets with lines of at most `max_line`.
    pub fn new(max_size: u64, max_line: usize) -> DataReader {
        DataReader {
            scan: Scan::LineStart,
            line_len: 0,
            max_line,
            max_size,
            decoded: Vec::new(),
            last: b'\n',
            raw_last: b'\n',
            refusal: None,
            size: 0,
            lines: 0,
            in_header: true,
            head: [0; 9],
            head_len: 0,
            received: 0,
            preview: Vec::new(),
        }
    }

    /// Consumes `input`; returns how many bytes were used when the end of the
    /// message was found (what follows belongs to the next command), or `None`
    /// when all of `input` was message.
    ///
    /// Only `<CRLF>.<CRLF>` ends the message. A bare LF is kept (stored as
    /// CRLF, as Postfix's `smtpd_forbid_bare_newline = normalize` does) but
    /// never starts a line for the end marker, so `\n.\n`, `\r.\r` and
    /// `\n.\r\n` cannot end a message early and smuggle a second one in.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.scan {
                Scan::LineStart if input[i] == b'.' => {
                    self.scan = Scan::Dot;
                    self.raw_last = b'.';
                    i += 1;
                }
                Scan::LineStart => self.scan = Scan::InLine,
                Scan::Dot => match input[i] {
                    b'\r' => {
                        self.scan = Scan::DotCr;
                        self.raw_last = b'\r';
                        i += 1;
                    }
                    // `.` then a bare LF: a line holding a dot, kept as it is.
                    b'\n' => {
                        self.line_len = 1;
                        self.emit(b".");
                        self.scan = Scan::InLine;
                    }
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
                    self.emit(b"\r");
                    self.scan = Scan::InLine;
                }
                Scan::InLine => {
                    let rest = &input[i..];
                    let (chunk, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                        Some(p) => {
                            let before = if p > 0 { rest[p - 1] } else { self.raw_last };
                            (&rest[..=p], before == b'\r')
                        }
                        None => (rest, false),
                    };
                    self.line_len += chunk.len();
                    if self.line_len > self.max_line && self.refusal.is_none() {
                        self.refusal = Some(Refusal::LineTooLong);
                    }
                    self.emit(chunk);
                    self.raw_last = chunk[chunk.len() - 1];
                    i += chunk.len();
                    if ends_line {
                        self.end_line();
                    }
                }
            }
        }
        None
    }

    /// Passes decoded bytes on, a bare LF written as CRLF.
    fn emit(&mut self, bytes: &[u8]) {
        match bytes.split_last() {
            Some((b'\n', body)) if body.last().copied().unwrap_or(self.last) != b'\r' => {
                self.keep(body);
                self.keep(b"\r\n");
            }
            _ => self.keep(bytes),
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else {
            return;
        };
        self.last = last;
        self.size += bytes.len() as u64;
        if self.head_len < self.head.len() {
            let n = bytes.len().min(self.head.len() - self.head_len);
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
            self.head_len += n;
        }
        if self.lines < PREVIEW_LINES && self.preview.len() < PREVIEW_BYTES {
            let n = bytes.len().min(PREVIEW_BYTES - self.preview.len());
            self.preview.extend_from_slice(&bytes[..n]);
        }
        if self.size > self.max_size {
            self.refusal.get_or_insert(Refusal::TooLarge);
        }
        // Once refused, keep reading to the end marker but stop storing.
        if self.refusal.is_none() {
            self.decoded.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self) {
        self.scan = Scan::LineStart;
        self.line_len = 0;
        self.lines += 1;
        if self.in_header {
            let head = &self.head[..self.head_len];
            if head == b"\r\n" {
                self.in_header = false;
            } else if head.eq_ignore_ascii_case(b"received:") {
                self.received += 1;
            }
        }
        self.head_len = 0;
    }

    /// Takes the bytes decoded so far, to be written where the message is
    /// stored. Nothing is kept once the message is refused.
    pub fn take_decoded(&mut self) -> Vec<u8> {
        // The next part starts at the size this one reached (within a
        // bound), not empty: growing it line by line from nothing was the
        // largest source of reallocations per message.
        if self.decoded.is_empty() {
            return Vec::new();
        }
        let room = self.decoded.capacity().min(64 * 1024);
        std::mem::replace(&mut self.decoded, Vec::with_capacity(room))
    }

    /// Whether the message is already known to be refused (its bytes need
    /// not be stored any more).
    pub fn refused(&self) -> bool {
        self.refusal.is_some()
    }

    /// What was learnt about the message, or why it is refused. Call once
    /// `feed` found the end and the decoded bytes were taken.
    pub fn finish(self) -> Result<MessageFacts, Refusal> {
        match self.refusal {
            Some(r) => Err(r),
            None => Ok(MessageFacts {
                size: self.size,
                lines: self.lines,
                received: self.received,
                preview: self.preview,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `wire` in chunks; returns the decoded message (or refusal),
    /// the facts, and how much of `wire` the message used.
    fn read_in_chunks(
        wire: &[u8],
        chunk: usize,
        max_size: u64,
    ) -> (Result<(Vec<u8>, MessageFacts), Refusal>, usize) {
        let mut reader = DataReader::new(max_size, 1000);
        let mut body = Vec::new();
        let mut offset = 0;
        for piece in wire.chunks(chunk) {
            let used = reader.feed(piece);
            let taken = reader.take_decoded();
            assert!(
                taken.len() <= piece.len() * 2,
                "decoded bytes wait in the reader"
            );
            body.extend(taken);
            if let Some(used) = used {
                return (reader.finish().map(|f| (body, f)), offset + used);
            }
            offset += piece.len();
        }
        panic!("no end found");
    }

    #[test]
    fn unstuffs_and_stops_at_the_end_whatever_the_chunking() {
        let wire = b"Subject: x\r\n\r\n..hidden dot\r\n.\r\n..\r\nlast\r\n.\r\nQUIT\r\n";
        for chunk in [1, 2, 3, 4, 7, 16, 512] {
            let (read, used) = read_in_chunks(wire, chunk, 1 << 20);
            let (body, facts) = read.unwrap();
            assert_eq!(body, b"Subject: x\r\n\r\n.hidden dot\r\n", "chunk {chunk}");
            assert_eq!(facts.size, body.len() as u64);
            assert_eq!(facts.lines, 3);
            assert_eq!(
                &wire[used..],
                b"..\r\nlast\r\n.\r\nQUIT\r\n",
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn empty_message_and_bare_lf_stored_as_crlf() {
        assert_eq!(read_in_chunks(b".\r\n", 1, 100).0.unwrap().0, b"");
        for chunk in [1, 2, 64] {
            let (body, facts) = read_in_chunks(b"a\nb\r\nc\r\r\n\nz\r\n.\r\n", chunk, 100)
                .0
                .unwrap();
            assert_eq!(body, b"a\r\nb\r\nc\r\r\n\r\nz\r\n");
            assert_eq!(facts.size, body.len() as u64);
        }
    }

    #[test]
    fn counts_received_fields_in_the_header_only() {
        let wire = b"Received: a\r\nRECEIVED: b\r\nSubject: s\r\nReceived:c\r\n\r\nReceived: body\r\n.\r\n";
        for chunk in [1, 3, 100] {
            let (_, facts) = read_in_chunks(wire, chunk, 1000).0.unwrap();
            assert_eq!(facts.received, 3, "chunk {chunk}");
            assert_eq!(
                facts.preview,
                b"Received: a\r\nRECEIVED: b\r\nSubject: s\r\nReceived:c\r\n"
            );
        }
    }

    #[test]
    fn limits() {
        let (read, used) = read_in_chunks(b"0123456789abc\r\n.\r\n", 4, 10);
        assert_eq!(read.unwrap_err(), Refusal::TooLarge);
        assert_eq!(used, 18);
        let mut reader = DataReader::new(1 << 20, 8);
        assert!(reader.feed(b"0123456789\r\n.\r\n").is_some());
        assert_eq!(reader.finish(), Err(Refusal::LineTooLong));
    }

    #[test]
    fn a_refused_message_stops_being_stored() {
        let mut reader = DataReader::new(10, 1000);
        assert_eq!(reader.feed(b"0123456789abcdef"), None);
        assert!(reader.refused());
        let before = reader.take_decoded().len();
        assert!(before <= 10, "nothing past the limit is handed out");
        assert_eq!(reader.feed(&[b'x'; 4096]), None);
        assert!(reader.take_decoded().is_empty());
    }

    #[test]
    fn only_crlf_dot_crlf_ends_the_message() {
        // The three smuggling variants: each stays inside the one message.
        for (sep, kept) in [
            (&b"\n.\n"[..], &b"\r\n.\r\n"[..]),
            (b"\r.\r", b"\r.\r"),
            (b"\n.\r\n", b"\r\n.\r\n"),
        ] {
            let wire = [
                &b"hello"[..],
                sep,
                b"MAIL FROM:<a@b.c>\r\nDATA\r\nsmuggled\r\n.\r\nNEXT",
            ]
            .concat();
            for chunk in [1, 2, 3, 5, 1024] {
                let (read, used) = read_in_chunks(&wire, chunk, 1000);
                let body = read.unwrap().0;
                let expected = [
                    &b"hello"[..],
                    kept,
                    b"MAIL FROM:<a@b.c>\r\nDATA\r\nsmuggled\r\n",
                ]
                .concat();
                assert_eq!(
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&expected),
                    "{sep:?} chunk {chunk}"
                );
                assert_eq!(&wire[used..], b"NEXT");
            }
        }
    }
}
