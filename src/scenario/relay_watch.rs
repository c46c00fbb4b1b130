//! A watcher in front of a student's SMTP port. The `fdns.toml` mailnet
//! writes publishes it as the port of the student server's SMTP and MX hosts,
//! so relay sessions other servers open to it pass through here: the grader
//! sees when a relay has ended (and can stop waiting early) and keeps the
//! dialogue for the report. Bytes are passed on unchanged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The most dialogue lines kept per watcher.
const MAX_LINES: usize = 400;
/// The longest a relay session may last through the watcher.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    closed: AtomicU64,
    lines: Mutex<Vec<String>>,
}

/// A running watcher.
pub struct RelayWatch {
    port: u16,
    counts: Arc<Counts>,
    stop: CancellationToken,
}

impl RelayWatch {
    /// Listens on a free loopback port and passes each connection on to `target`.
    pub async fn start(name: &str, target: SocketAddr) -> std::io::Result<RelayWatch> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let stop = CancellationToken::new();
        let (task_counts, task_stop, name) = (counts.clone(), stop.clone(), name.to_string());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = task_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, peer)) = accepted else {
                    continue;
                };
                let n = task_counts.opened.fetch_add(1, Ordering::SeqCst) + 1;
                let (counts, stop, tag) = (
                    task_counts.clone(),
                    task_stop.clone(),
                    format!("[relay into {name} #{n} from {peer}]"),
                );
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::timeout(SESSION_LIMIT, pass_on(client, target, &counts, &tag)) => {}
                    }
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Ok(RelayWatch { port, counts, stop })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Relay sessions that have ended.
    pub fn closed(&self) -> u64 {
        self.counts.closed.load(Ordering::SeqCst)
    }

    /// Relay sessions opened, ended or not.
    pub fn opened(&self) -> u64 {
        self.counts.opened.load(Ordering::SeqCst)
    }

    /// The dialogue lines recorded since the last call.
    pub fn take_lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.counts.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for RelayWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn record(counts: &Counts, tag: &str, who: &str, bytes: &[u8]) {
    let mut lines = counts.lines.lock().unwrap_or_else(|e| e.into_inner());
    for line in String::from_utf8_lossy(bytes).lines() {
        if lines.len() < MAX_LINES {
            lines.push(format!("{tag} {who}: {}", line.trim_end_matches('\r')));
        }
    }
}

/// Copies both ways until both sides have closed, recording what passes.
async fn pass_on(mut client: TcpStream, target: SocketAddr, counts: &Counts, tag: &str) {
    let Ok(Ok(mut server)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await
    else {
        record(
            counts,
            tag,
            "mailnet",
            b"the student's server did not accept the connection",
        );
        return;
    };
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            record(counts, tag, "C", &buf[..n]);
        }
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            record(counts, tag, "S", &buf[..n]);
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}
