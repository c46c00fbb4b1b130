//! The clients' line reader: bounded in length and in time.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed or broke.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Nothing complete arrived in time.
    #[error("timed out after {0:?} waiting for the server")]
    Timeout(Duration),
}

/// Reads one line, newline included, of at most `limit + 1` bytes (so a
/// caller can tell a line longer than `limit`), within `timeout`; empty at
/// end of stream.
pub async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    tokio::time::timeout(
        timeout,
        reader.take(limit as u64 + 1).read_until(b'\n', &mut line),
    )
    .await
    .map_err(|_| ReadError::Timeout(timeout))??;
    Ok(line)
}
