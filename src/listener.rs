//! The accept loop both protocols share: accept until shutdown, cap the
//! sessions at a server's `max_sessions`, answer the rest with a busy line.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections until `shutdown`, running `session` for each on
/// `tracker` while fewer than `max_sessions` are open; a connection over the
/// limit gets `busy` and is closed.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    server: &str,
    max_sessions: usize,
    busy: Vec<u8>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    session: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_sessions));
    let busy: Arc<[u8]> = busy.into();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(%server, %error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let running = session(stream, peer);
                tracker.spawn(async move {
                    running.await;
                    drop(permit);
                });
            }
            Err(_) => {
                let busy = busy.clone();
                tracker.spawn(async move {
                    let mut stream = stream;
                    let _ = stream.write_all(&busy).await;
                });
            }
        }
    }
}

/// What waiting for a client produced.
pub enum Input {
    /// Bytes arrived (appended to the buffer).
    Data,
    /// The client closed the connection or it broke.
    Closed,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// Waits for the client's next bytes, the idle timeout, or shutdown, whichever comes first.
pub async fn next_input<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    idle: std::time::Duration,
    shutdown: &CancellationToken,
) -> Input {
    use tokio::io::AsyncReadExt;
    tokio::select! {
        read = tokio::time::timeout(idle, stream.read_buf(buf)) => match read {
            Ok(Ok(0)) | Ok(Err(_)) => Input::Closed,
            Ok(Ok(_)) => Input::Data,
            Err(_) => Input::Idle,
        },
        _ = shutdown.cancelled() => Input::Shutdown,
    }
}
