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

/// How long accepts pause when the process is out of file descriptors or memory.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether an accept error means the process or system lacks resources
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM), as opposed to one bad connection.
fn out_of_resources(error: &std::io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    matches!(
        error.raw_os_error(),
        Some(ENOMEM | ENFILE | EMFILE | ENOBUFS)
    )
}

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
    // A network file bounds max_sessions far lower; a Policy built in code
    // need not be, and Semaphore::new panics above MAX_PERMITS.
    let limit = Arc::new(Semaphore::new(max_sessions.min(Semaphore::MAX_PERMITS)));
    let busy: Arc<[u8]> = busy.into();
    // Set while accept keeps failing for want of resources: one log line
    // per episode, not one per attempt.
    let mut starved = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) if out_of_resources(&error) => {
                // The pending connection stays queued: accepting again at
                // once fails again, so wait a little (as tokio's and
                // hyper's servers do) while the sessions free some.
                if !std::mem::replace(&mut starved, true) {
                    tracing::warn!(%server, %error, "cannot accept: out of resources; pausing accepts until some are free");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
                continue;
            }
            // One connection's trouble (reset before accept, and the like).
            Err(error) => {
                tracing::debug!(%server, %error, "accept failed");
                continue;
            }
        };
        if std::mem::take(&mut starved) {
            tracing::info!(%server, "accepting again");
        }
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
