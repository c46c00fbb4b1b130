//! Sending a message read from a stream a chunk at a time, dot-stuffed as
//! it goes (RFC 5321 §4.5.2), so a message of any size costs the client two
//! fixed buffers, never its own size.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::{ClientError, Response, SmtpClient};

/// The most read from a message at once; what is written at once is at most
/// twice this (every line a lone `.`) plus the terminator.
pub const CHUNK: usize = 64 * 1024;

/// Dot-stuffing with its state carried from one piece of a message to the
/// next: the same octets [`crate::wire::stuffed`] makes of the whole, for
/// any split.
#[derive(Debug)]
pub(crate) struct DotStuffer {
    at_line_start: bool,
    /// The last octet seen, to tell `\r\n` from a bare `\n` across pieces.
    last: Option<u8>,
    /// A bare `\n` that ended the last piece, held back: if it also ends
    /// the message it is sent as `\r\n`, as the whole-buffer version does.
    held_lf: bool,
}

impl Default for DotStuffer {
    fn default() -> DotStuffer {
        DotStuffer {
            at_line_start: true,
            last: None,
            held_lf: false,
        }
    }
}

impl DotStuffer {
    /// Appends `piece`, stuffed, to `out`.
    pub(crate) fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let Some((&end, rest)) = piece.split_last() else {
            return;
        };
        if std::mem::take(&mut self.held_lf) {
            out.push(b'\n');
        }
        let hold = end == b'\n' && rest.last().or(self.last.as_ref()) != Some(&b'\r');
        let body = if hold { rest } else { piece };
        for line in body.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start && line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            self.at_line_start = line.last() == Some(&b'\n');
        }
        if hold {
            self.held_lf = true;
            self.at_line_start = true;
        }
        self.last = Some(end);
    }

    /// Ends the message: its last line CRLF-ended, then `.` CRLF.
    pub(crate) fn finish(&self, out: &mut Vec<u8>) {
        let unended = self.held_lf || self.last.is_some_and(|b| b != b'\n');
        if unended {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Sends a message after a `354`, reading it from `message` at most
    /// [`CHUNK`] octets at a time: dot-stuffed, CRLF-terminated, then `.`;
    /// reads the reply. Each write has the client's deadline. A failed read
    /// is an error before the final dot, so the server never takes half a
    /// message: the caller must drop the connection.
    pub async fn send_message_from<R: AsyncRead + Unpin>(
        &mut self,
        mut message: R,
    ) -> Result<Response, ClientError> {
        let mut chunk = vec![0; CHUNK];
        let mut wire = Vec::with_capacity(2 * CHUNK + 5);
        let mut stuffer = DotStuffer::default();
        // For the transcript: the start of the message, and its size.
        let mut preview = Vec::new();
        let (mut size, mut lines) = (0u64, 0u64);
        loop {
            let n = tokio::time::timeout(self.timeout, message.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))??;
            wire.clear();
            if n == 0 {
                stuffer.finish(&mut wire);
                self.write(&wire).await?;
                break;
            }
            let piece = &chunk[..n];
            if self.transcript.is_some() {
                if preview.len() < 1024 {
                    preview.extend_from_slice(&piece[..n.min(1024 - preview.len())]);
                }
                lines += piece.iter().filter(|&&b| b == b'\n').count() as u64;
                size += n as u64;
            }
            stuffer.push(piece, &mut wire);
            self.write(&wire).await?;
        }
        if self.transcript.is_some() {
            let unended = stuffer.last.is_some_and(|b| b != b'\n');
            for line in crate::transcript::abbreviate(&preview, lines + u64::from(unended), size) {
                self.note_line(line);
            }
        }
        self.read_reply().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::wire::stuffed(message, &mut out);
        out
    }

    fn in_pieces(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        for piece in message.chunks(size) {
            stuffer.push(piece, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    /// Every awkward place a piece can end: before and after a `.` at a
    /// line start, between `\r` and `\n`, after a bare `\n`, at the very end.
    #[test]
    fn stuffing_in_pieces_of_any_size_matches_the_whole() {
        let cases: [&[u8]; 12] = [
            b"",
            b".",
            b"\n",
            b"\r\n",
            b"a\r\n.b\r\n..\r\n.\r\nend",
            b".\r\n.\r\n.",
            b"line\nbare\n.dot after bare\n",
            b"ends with bare lf\n",
            b"ends with cr\r",
            b"\r\r\n.\n\n.\r\n",
            b"x\r\n.\r\n",
            b"Subject: s\r\n\r\n.hidden\r\n..two\r\nlast.",
        ];
        for message in cases {
            for size in [1, 2, 3, 4, 5, 7, 8, 16, 64, 512, CHUNK] {
                assert_eq!(
                    in_pieces(message, size),
                    whole(message),
                    "{:?} in pieces of {size}",
                    String::from_utf8_lossy(message)
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_message_any_split(
            message in proptest::collection::vec(proptest::sample::select(b".\r\na ".to_vec()), 0..64),
            size in 1usize..9,
        ) {
            proptest::prop_assert_eq!(in_pieces(&message, size), whole(&message));
        }
    }

    /// A message source that fails the test if asked for more than
    /// [`CHUNK`] octets at once: a sender that read the message whole (or
    /// in bigger pieces) would ask for more.
    struct Strict {
        left: std::io::Cursor<Vec<u8>>,
        largest: usize,
    }

    impl AsyncRead for Strict {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            assert!(
                buf.remaining() <= CHUNK,
                "asked for {} octets at once",
                buf.remaining()
            );
            self.largest = self.largest.max(buf.remaining());
            let mut window = vec![0; buf.remaining()];
            let n = std::io::Read::read(&mut self.left, &mut window)?;
            buf.put_slice(&window[..n]);
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Five chunks and a bit, through a source that refuses bigger reads:
    /// the peer gets exactly what whole-buffer stuffing makes.
    #[tokio::test]
    async fn a_large_message_is_read_at_most_a_chunk_at_a_time() {
        let line = b".leading dot, and a line long enough to cross chunk edges often\r\n";
        let message: Vec<u8> = line.iter().copied().cycle().take(5 * CHUNK + 77).collect();
        let (client_side, mut server_side) = tokio::io::duplex(CHUNK);
        let expected = whole(&message);
        let peer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut got = Vec::new();
            let mut buf = vec![0; 4096];
            while !got.ends_with(b"\r\n.\r\n") {
                let n = server_side.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the end of the message");
                got.extend_from_slice(&buf[..n]);
            }
            server_side.write_all(b"250 ok\r\n").await.unwrap();
            got
        });
        let mut client = SmtpClient::new(client_side, std::time::Duration::from_secs(10));
        let mut source = Strict {
            left: std::io::Cursor::new(message),
            largest: 0,
        };
        let reply = client.send_message_from(&mut source).await.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(source.largest, CHUNK);
        assert_eq!(peer.await.unwrap(), expected);
    }
}
