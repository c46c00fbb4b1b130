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
/// The most memory a part starts with, and a kept buffer may hold.
pub const MAX_ROOM: usize = 64 * 1024;

/// The state of one message being received.
#[derive(Debug)]
pub struct DataReader {
    scan: Scan,
    line_len: usize,
    max_line: usize,
    max_size: u64,
    /// Decoded bytes not yet taken by [`DataReader::take_decoded`].
    decoded: Vec<u8>,
    /// The capacity the last part taken reached (within a bound): the
    /// next one starts at it rather than growing line by line from nothing.
    room: usize,
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
            room: 0,
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
        if self.decoded.capacity() == 0 && !input.is_empty() {
            self.decoded.reserve(self.room);
        }
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
                Scan::InLine => i = self.lines(input, i),
            }
        }
        None
    }

    /// Reads on from `input[i]`, inside a line: whole lines ending in CRLF
    /// and not starting with a dot are what messages are made of, and they
    /// decode to themselves, so they are found with `memchr`, counted line
    /// by line as [`DataReader::keep`] would count them, and stored as one
    /// run. Returns where it stopped: at the end of `input`, or at the
    /// start of a line starting with a dot.
    fn lines(&mut self, input: &[u8], mut i: usize) -> usize {
        let mut run = i;
        loop {
            let rest = &input[i..];
            let (len, ends_line) = match memchr::memchr(b'\n', rest) {
                Some(p) => {
                    let before = if p > 0 { rest[p - 1] } else { self.raw_last };
                    if before != b'\r' {
                        // A bare LF, which does not end the line: stored as
                        // CRLF, so the run ends before it.
                        self.store(&input[run..i]);
                        let chunk = &rest[..=p];
                        self.line_len += chunk.len();
                        if self.line_len > self.max_line && self.refusal.is_none() {
                            self.refusal = Some(Refusal::LineTooLong);
                        }
                        self.emit(chunk);
                        self.raw_last = b'\n';
                        i += chunk.len();
                        run = i;
                        if i == input.len() {
                            return i;
                        }
                        continue;
                    }
                    (p + 1, true)
                }
                None => (rest.len(), false),
            };
            let segment = &rest[..len];
            let stored = self.refusal.is_none();
            self.line_len += len;
            if self.line_len > self.max_line && self.refusal.is_none() {
                self.refusal = Some(Refusal::LineTooLong);
            }
            self.count(segment);
            if stored && self.refusal.is_some() {
                // What came before this segment was stored, as `keep` stores
                // each segment while the message is not refused.
                self.decoded.extend_from_slice(&input[run..i]);
            }
            self.raw_last = segment[len - 1];
            i += len;
            if !ends_line {
                self.store(&input[run..i]);
                return i;
            }
            self.end_line();
            if i < input.len() && input[i] != b'.' {
                self.scan = Scan::InLine;
                continue;
            }
            self.store(&input[run..i]);
            return i;
        }
    }

    /// Stores a run of decoded bytes, counted already, unless the message
    /// is refused.
    fn store(&mut self, run: &[u8]) {
        if self.refusal.is_none() {
            self.decoded.extend_from_slice(run);
        }
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
        if bytes.is_empty() {
            return;
        }
        self.count(bytes);
        // Once refused, keep reading to the end marker but stop storing.
        self.store(bytes);
    }

    /// Counts decoded bytes (not empty) into the message's facts, and
    /// refuses it when they take it over the size limit.
    fn count(&mut self, bytes: &[u8]) {
        self.last = bytes[bytes.len() - 1];
        self.size += bytes.len() as u64;
        // Only a header line's start is looked at (by `end_line`).
        if self.in_header && self.head_len < self.head.len() {
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
        if self.decoded.is_empty() {
            return Vec::new();
        }
        // Growing each part line by line from nothing was the largest
        // source of reallocations per message.
        self.room = self.decoded.capacity().min(MAX_ROOM);
        std::mem::take(&mut self.decoded)
    }

    /// Whether the reader has no memory to decode into (its last part was
    /// taken): a buffer given now is used rather than a new one.
    pub fn needs_buffer(&self) -> bool {
        self.decoded.capacity() == 0
    }

    /// Gives the reader `buffer` (emptied) to decode into, when it
    /// [needs one](DataReader::needs_buffer): the memory of a part already
    /// written, so a session decodes message after message without
    /// allocating.
    pub fn give_buffer(&mut self, mut buffer: Vec<u8>) {
        if self.needs_buffer() {
            buffer.clear();
            self.decoded = buffer;
        }
    }

    /// Gives the reader `buffer` (emptied) to keep the preview in: the
    /// memory of the last message's, which grew line by line.
    pub fn give_preview_buffer(&mut self, mut buffer: Vec<u8>) {
        if self.preview.capacity() == 0 {
            buffer.clear();
            self.preview = buffer;
        }
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

    /// The reader as it was before whole lines were read as runs: one
    /// byte at a time, every rule spelled out. What it decodes, counts and
    /// refuses is what the reader must.
    #[derive(Default)]
    struct Reference {
        out: Vec<u8>,
        last: u8,
        size: u64,
        lines: u64,
        head: Vec<u8>,
        preview: Vec<u8>,
        refusal: Option<Refusal>,
        max_size: u64,
    }

    impl Reference {
        fn keep(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.last = b;
                self.size += 1;
                if self.head.len() < 9 {
                    self.head.push(b);
                }
                if self.lines < PREVIEW_LINES && self.preview.len() < PREVIEW_BYTES {
                    self.preview.push(b);
                }
                if self.size > self.max_size {
                    self.refusal.get_or_insert(Refusal::TooLarge);
                }
                if self.refusal.is_none() {
                    self.out.push(b);
                }
            }
        }
    }

    /// Decodes `wire` as [`Reference`]: the bytes stored, where the message
    /// ended, and its facts (or refusal) as text.
    fn reference(wire: &[u8], max_size: u64, max_line: usize) -> (Vec<u8>, Option<usize>, String) {
        let mut r = Reference {
            last: b'\n',
            max_size,
            ..Default::default()
        };
        let (mut scan, mut line_len, mut raw_last) = (0u8, 0usize, b'\n');
        let (mut in_header, mut received, mut used) = (true, 0usize, None);
        for (i, &b) in wire.iter().enumerate() {
            match (scan, b) {
                (0, b'.') => scan = 1,
                (1, b'\r') => scan = 2,
                (2, b'\n') => {
                    used = Some(i + 1);
                    break;
                }
                _ => {
                    if scan == 1 {
                        line_len = 1;
                        if b == b'\n' {
                            r.keep(b".");
                        }
                    }
                    if scan == 2 {
                        line_len = 2;
                        r.keep(b"\r");
                    }
                    scan = 3;
                    line_len += 1;
                    if line_len > max_line && r.refusal.is_none() {
                        r.refusal = Some(Refusal::LineTooLong);
                    }
                    if b == b'\n' && r.last != b'\r' {
                        r.keep(b"\r\n");
                    } else {
                        r.keep(&[b]);
                    }
                    if b == b'\n' && raw_last == b'\r' {
                        scan = 0;
                        line_len = 0;
                        r.lines += 1;
                        if in_header {
                            if r.head == b"\r\n" {
                                in_header = false;
                            } else if r.head.eq_ignore_ascii_case(b"received:") {
                                received += 1;
                            }
                        }
                        r.head.clear();
                    }
                }
            }
            raw_last = b;
        }
        let facts = match r.refusal {
            Some(refusal) => format!("{refusal:?}"),
            None => format!("{} {} {received} {:?}", r.size, r.lines, r.preview),
        };
        (r.out, used, facts)
    }

    fn reader_refused(facts: &str) -> bool {
        facts == "TooLarge" || facts == "LineTooLong"
    }

    #[test]
    fn runs_of_lines_decode_as_byte_by_byte_reading_does() {
        // Every short mix of the bytes that matter, and longer pseudo-random
        // ones, in every chunking: the same bytes stored (up to a refusal),
        // the same end, the same facts.
        let alphabet = b".\r\nRa";
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for n in 0..=6u32 {
            for code in 0..alphabet.len().pow(n) {
                let mut c = code;
                let mut input = Vec::new();
                for _ in 0..n {
                    input.push(alphabet[c % alphabet.len()]);
                    c /= alphabet.len();
                }
                inputs.push(input);
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let words: [&[u8]; 8] = [
            b"\r\n",
            b".",
            b"\n",
            b"\r",
            b"Received: x",
            b"hello world",
            b"\r\n.\r\n",
            b"..",
        ];
        for _ in 0..400 {
            let mut input = Vec::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.extend_from_slice(words[(seed % 8) as usize]);
            }
            inputs.push(input);
        }
        for body in inputs {
            let wire = [&body[..], b"\r\n.\r\nNEXT"].concat();
            for (max_size, max_line) in [(1 << 20, 1000), (12, 1000), (1 << 20, 5), (30, 9)] {
                let (want, want_used, want_facts) = reference(&wire, max_size, max_line);
                for chunk in [1, 2, 3, 5, 8, 1024] {
                    let mut reader = DataReader::new(max_size, max_line);
                    let (mut got, mut used, mut offset) = (Vec::new(), None, 0);
                    for piece in wire.chunks(chunk) {
                        let n = reader.feed(piece);
                        got.extend(reader.take_decoded());
                        if let Some(n) = n {
                            used = Some(offset + n);
                            break;
                        }
                        offset += piece.len();
                    }
                    let facts = match reader.finish() {
                        Ok(f) => format!("{} {} {} {:?}", f.size, f.lines, f.received, f.preview),
                        Err(refusal) => format!("{refusal:?}"),
                    };
                    let what = format!("{body:?} chunk {chunk} limits {max_size} {max_line}");
                    assert_eq!(used, want_used, "{what}");
                    assert_eq!(facts, want_facts, "{what}");
                    if reader_refused(&facts) {
                        // A refused message is thrown away: what was stored
                        // before the refusal depends on the reads, and need
                        // only be a part of the message.
                        assert!(want.starts_with(&got), "{what}");
                    } else {
                        assert_eq!(got, want, "{what}");
                    }
                }
            }
        }
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
