//! The project's one SMTP client: the load generator uses it now; relay,
//! agent and grader build on it. Plain line I/O over any stream.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::reply::Reply;

/// An SMTP client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed or broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer in time.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server's reply was not SMTP.
    #[error("malformed reply: {0:?}")]
    Malformed(String),
}

/// Reads one line, newline included, of at most `limit + 1` bytes (so a
/// caller can tell a line longer than `limit`), within `timeout`; empty at
/// end of stream. Both protocol clients read raw lines through this.
pub async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    tokio::time::timeout(
        timeout,
        reader.take(limit as u64 + 1).read_until(b'\n', &mut line),
    )
    .await
    .map_err(|_| ClientError::Timeout)??;
    Ok(line)
}

/// A connected SMTP client.
pub struct SmtpClient<S> {
    stream: BufReader<S>,
    timeout: Duration,
    /// `C:`/`S:` lines, when asked for (`mailnet send --transcript`, the grader).
    transcript: Option<Vec<crate::transcript::Line>>,
}

impl SmtpClient<TcpStream> {
    async fn open(
        addr: std::net::SocketAddr,
        timeout: Duration,
        record: bool,
    ) -> Result<(Self, Reply), ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let _ = stream.set_nodelay(true);
        let mut client = SmtpClient::new(stream, timeout);
        if record {
            client.record_transcript();
        }
        let greeting = client.read_reply().await?;
        Ok((client, greeting))
    }

    /// Connects, starts recording the dialogue and reads the greeting.
    pub async fn connect_recording(
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<(Self, Reply), ClientError> {
        Self::open(addr, timeout, true).await
    }

    /// Connects and reads the greeting.
    pub async fn connect(
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<(Self, Reply), ClientError> {
        Self::open(addr, timeout, false).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Wraps a connected stream (the greeting not yet read).
    pub fn new(stream: S, timeout: Duration) -> Self {
        SmtpClient {
            stream: BufReader::new(stream),
            timeout,
            transcript: None,
        }
    }

    /// Starts recording the dialogue (the greeting, if already read, is not in it).
    pub fn record_transcript(&mut self) {
        self.transcript.get_or_insert_with(Vec::new);
    }

    /// Takes the lines recorded so far.
    pub fn take_transcript(&mut self) -> Vec<crate::transcript::Line> {
        self.transcript
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn note(&mut self, line: crate::transcript::Line) {
        if let Some(t) = self.transcript.as_mut() {
            t.push(line);
        }
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(self.timeout, self.stream.read_line(&mut line))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| ClientError::Malformed(line.to_string()))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            self.note(crate::transcript::Line::server(line));
            lines.push((code, line.get(4..).unwrap_or("").to_string()));
            if !more {
                return Ok(Reply {
                    code,
                    enhanced: None,
                    lines: lines.into_iter().map(|(_, t)| t).collect(),
                });
            }
        }
    }

    /// Reads one raw line, newline included, of at most `limit + 1` bytes
    /// (so a caller can tell a line longer than `limit`); empty at end of stream.
    pub async fn read_line_raw(&mut self, limit: usize) -> Result<Vec<u8>, ClientError> {
        read_line_limited(&mut self.stream, limit, self.timeout).await
    }

    /// Records a line of the dialogue (for callers that frame replies themselves).
    pub fn note_line(&mut self, line: crate::transcript::Line) {
        self.note(line);
    }

    /// Sends raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.note(crate::transcript::Line::client(line));
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// Sends several commands in one write (PIPELINING) and reads a reply for each.
    pub async fn pipeline(&mut self, lines: &[String]) -> Result<Vec<Reply>, ClientError> {
        let mut batch = String::new();
        for line in lines {
            self.note(crate::transcript::Line::client(line.as_str()));
            batch.push_str(line);
            batch.push_str("\r\n");
        }
        self.write(batch.as_bytes()).await?;
        let mut replies = Vec::with_capacity(lines.len());
        for _ in lines {
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }

    /// Sends a message after a `354`: dot-stuffed, CRLF-terminated, then `.`; reads the reply.
    pub async fn send_message(&mut self, message: &[u8]) -> Result<Reply, ClientError> {
        if self.transcript.is_some() {
            for line in crate::transcript::abbreviate_message(message) {
                self.note(line);
            }
        }
        let mut wire = Vec::with_capacity(message.len() + 64);
        crate::pop3::content::stuffed(message, &mut wire);
        self.write(&wire).await?;
        self.read_reply().await
    }
}
