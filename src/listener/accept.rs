//! The accept loop every protocol shares: accept until shutdown, cap the
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
