//! One DNS message out and one in over TCP (RFC 1035 §4.2.2 framing: a
//! two-octet length before each), for the hub's client and for forwarding.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// No connection, or it broke.
    Io(std::io::Error),
    /// No answer within the deadline.
    Timeout,
}

/// Sends `wire` to `server` and reads its answer, all within `timeout`.
pub async fn exchange(
    server: SocketAddr,
    wire: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let talk = async {
        let length = u16::try_from(wire.len()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a DNS message over 65535 octets",
            )
        })?;
        let mut stream = TcpStream::connect(server).await?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(wire);
        stream.write_all(&framed).await?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    };
    tokio::time::timeout(timeout, talk)
        .await
        .map_err(|_| ExchangeError::Timeout)?
        .map_err(ExchangeError::Io)
}
