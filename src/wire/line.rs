//! The clients' line reader: bounded in length and in time.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// A client's failure below the level of replies, the same for SMTP and POP3.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed or broke.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server did not answer (or take our bytes) in time.
    #[error("timed out after {0:?} waiting for the server")]
    Timeout(Duration),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server's line was not the protocol's.
    #[error("malformed reply: {0:?}")]
    Malformed(String),
}

/// Reads one line, newline included, of at most `limit + 1` bytes (so a
/// caller can tell a line longer than `limit`), within `timeout`; empty at
/// end of stream.
pub async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    let mut line = Vec::new();
    tokio::time::timeout(
        timeout,
        reader.take(limit as u64 + 1).read_until(b'\n', &mut line),
    )
    .await
    .map_err(|_| ClientError::Timeout(timeout))??;
    Ok(line)
}

/// Writes `bytes` and flushes (over TLS the last record may otherwise wait
/// in a buffer), within `timeout`.
pub async fn write_flushed<W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), ClientError> {
    use tokio::io::AsyncWriteExt;
    tokio::time::timeout(timeout, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
    .map_err(|_| ClientError::Timeout(timeout))??;
    Ok(())
}
