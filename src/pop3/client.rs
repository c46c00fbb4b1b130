//! The project's one POP3 client, for the load generator, the agent and the grader.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};
use tokio::net::TcpStream;

pub use crate::wire::ClientError;

/// Longest line read from a server (RFC 1939 allows 512 in replies; bodies
/// may carry RFC 5322's 998 plus CRLF, and real messages break that).
const MAX_LINE: usize = 64 * 1024;

/// A connected POP3 client.
pub struct Pop3Client<S> {
    stream: BufReader<S>,
    timeout: Duration,
}

/// A POP3 status line: `+OK ...` or `-ERR ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `+OK`?
    pub ok: bool,
    /// The whole line without CRLF.
    pub line: String,
}

impl Pop3Client<TcpStream> {
    /// Connects and reads the greeting.
    pub async fn connect(
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<(Self, Status), ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        let _ = stream.set_nodelay(true);
        let mut client = Pop3Client {
            stream: BufReader::with_capacity(64 * 1024, stream),
            timeout,
        };
        let greeting = client.status().await?;
        Ok((client, greeting))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pop3Client<S> {
    /// The connection, for a TLS upgrade (STLS). Anything buffered but not
    /// read is dropped: after `+OK` to STLS it would have come in clear.
    pub fn into_inner(self) -> S {
        self.stream.into_inner()
    }

    /// Wraps a connected stream (the greeting not yet read).
    pub fn new(stream: S, timeout: Duration) -> Self {
        Pop3Client {
            stream: BufReader::with_capacity(64 * 1024, stream),
            timeout,
        }
    }

    async fn line(&mut self) -> Result<Vec<u8>, ClientError> {
        let line = self.read_line_raw(MAX_LINE).await?;
        if line.is_empty() {
            return Err(ClientError::Closed);
        }
        Ok(line)
    }

    /// Reads one raw line, newline included, of at most `limit + 1` bytes
    /// (so a caller can tell a line longer than `limit`); empty at end of stream.
    pub async fn read_line_raw(&mut self, limit: usize) -> Result<Vec<u8>, ClientError> {
        crate::wire::read_line_limited(&mut self.stream, limit, self.timeout).await
    }

    /// Sends raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        crate::wire::write_flushed(self.stream.get_mut(), bytes, self.timeout).await
    }

    /// Reads a status line.
    pub async fn status(&mut self) -> Result<Status, ClientError> {
        let line = self.line().await?;
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if !(text.starts_with("+OK") || text.starts_with("-ERR") || text.starts_with('+')) {
            return Err(ClientError::Malformed(text));
        }
        Ok(Status {
            ok: !text.starts_with("-ERR"),
            line: text,
        })
    }

    /// Sends a command and reads its status line.
    pub async fn command(&mut self, line: &str) -> Result<Status, ClientError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.status().await
    }

    /// Sends a command whose `+OK` is followed by a dot-terminated body
    /// (LIST, UIDL, RETR, TOP, CAPA); returns the status and the body unstuffed.
    pub async fn multiline(&mut self, line: &str) -> Result<(Status, Vec<u8>), ClientError> {
        let status = self.command(line).await?;
        if !status.ok {
            return Ok((status, Vec::new()));
        }
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            if line == b".\r\n" || line == b".\n" {
                return Ok((status, body));
            }
            let line = if line.starts_with(b"..") {
                &line[1..]
            } else {
                &line[..]
            };
            body.extend_from_slice(line);
        }
    }

    /// Drains whatever the server sent (used after QUIT).
    pub async fn close(mut self) -> Result<(), ClientError> {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(self.timeout, self.stream.read_to_end(&mut rest)).await;
        Ok(())
    }
}
