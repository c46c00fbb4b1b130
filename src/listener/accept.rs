//! The accept loop every protocol shares: accept until shutdown, cap the
//! sessions at a server's `max_sessions` and each client address at
//! `max_sessions_per_client`, answer the rest with a busy line.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the busy answer may take to send.
const BUSY_WRITE: std::time::Duration = std::time::Duration::from_secs(1);

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

/// How many sessions a listener may hold.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// In all.
    pub sessions: usize,
    /// From one client address.
    pub per_client: usize,
    /// Whether `per_client` applies to loopback clients too.
    pub limit_loopback: bool,
}

/// Open sessions per client address; a [`ClientSlot`] gives its count back.
#[derive(Debug, Default)]
struct Clients(std::sync::Mutex<HashMap<IpAddr, usize>>);

struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Clients {
    /// Takes a slot for `ip` unless it already holds `cap`.
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until `shutdown`, running `session` for each on
/// `tracker` while the caps allow; a connection over a cap gets `busy` and
/// is closed.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    server: &str,
    caps: Caps,
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
    let limit = Arc::new(Semaphore::new(caps.sessions.min(Semaphore::MAX_PERMITS)));
    let clients = Arc::new(Clients::default());
    let busy: Arc<[u8]> = busy.into();
    // Set while accept keeps failing for want of resources: one log line
    // per episode, not one per attempt.
    let mut starved = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        super::spin::SERVING.touch();
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
        let ip = peer.ip().to_canonical();
        let slot = if ip.is_loopback() && !caps.limit_loopback {
            None
        } else {
            match clients.take(ip, caps.per_client) {
                Some(slot) => Some(slot),
                None => {
                    tracing::info!(%server, %peer, "too many sessions from one client");
                    refuse(&tracker, stream, busy.clone());
                    continue;
                }
            }
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                // On the heap, so what is spawned is a pointer: tokio moves
                // a task's future by value several times as it starts and
                // ends it, and a session's is kilobytes (those copies were
                // most of a short connection's instructions).
                let running = Box::pin(session(stream, peer));
                tracker.spawn(async move {
                    running.await;
                    drop((permit, slot));
                });
            }
            Err(_) => refuse(&tracker, stream, busy.clone()),
        }
    }
}

/// Answers a connection over a cap with `busy` and closes it.
fn refuse(tracker: &TaskTracker, mut stream: TcpStream, busy: Arc<[u8]>) {
    tracker.spawn(async move {
        // A few bytes fit any socket buffer; the deadline is for form's sake.
        let _ = tokio::time::timeout(BUSY_WRITE, stream.write_all(&busy)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_or_memory_pauses_other_errors_do_not() {
        for errno in [12, 23, 24, 105] {
            assert!(out_of_resources(&std::io::Error::from_raw_os_error(errno)));
        }
        // ECONNABORTED: one client gave up; accept the next at once.
        assert!(!out_of_resources(&std::io::Error::from_raw_os_error(103)));
    }

    #[test]
    fn client_slots_are_counted_per_address_and_given_back() {
        let clients = Arc::new(Clients::default());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = clients.take(ip, 2).unwrap();
        let _b = clients.take(ip, 2).unwrap();
        assert!(clients.take(ip, 2).is_none());
        assert!(clients.take("192.0.2.8".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(clients.take(ip, 2).is_some());
    }
}
