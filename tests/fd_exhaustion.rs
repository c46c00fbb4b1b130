//! The accept loop when the process has no file descriptor left (issue 12:
//! it once spun a core and wrote 69 MB/s of warnings). A test binary of its
//! own: it uses up every descriptor of its process, which would break any
//! test running beside it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailnet::listener::{accept_loop, Caps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Log output kept in memory: writing it needs no descriptor.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// CPU time this process has used so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is valid for writes and initialised by the call.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_pauses_logs_once_and_resumes() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Clients connected before the descriptors run out: the kernel holds
    // them in the listen queue until the loop can accept them.
    let clients: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();

    // Use up every descriptor (under a low limit, so it is quick).
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_cur.min(512);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => filler.push(file),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => panic!("{e}"),
        }
    }

    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let loop_task = tokio::spawn(accept_loop(
        listener,
        "test.example",
        Caps {
            sessions: 100,
            per_client: 100,
            limit_loopback: false,
        },
        b"421 busy\r\n".to_vec(),
        shutdown.clone(),
        tracker.clone(),
        move |stream, _peer| {
            let tx = accepted_tx.clone();
            async move {
                let _ = tx.send(());
                drop(stream);
            }
        },
    ));

    // The loop notices, and says so once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !logs.text().contains("out of resources") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warning:\n{}",
            logs.text()
        );
        tokio::task::yield_now().await;
    }
    // While no descriptor is free nobody is accepted, and the loop waits
    // rather than spins: half a second costs it little CPU and no more log.
    let cpu = cpu_time();
    let waited = tokio::time::timeout(Duration::from_millis(500), accepted.recv()).await;
    assert!(waited.is_err(), "accepted without a free descriptor");
    let used = cpu_time() - cpu;
    assert!(
        used < Duration::from_millis(150),
        "{used:?} of CPU in 0.5 s while starved"
    );
    assert_eq!(
        logs.text().matches("out of resources").count(),
        1,
        "{}",
        logs.text()
    );

    // Descriptors come back: every waiting client is accepted.
    filler.truncate(filler.len().saturating_sub(16));
    for n in 0..clients.len() {
        tokio::time::timeout(Duration::from_secs(10), accepted.recv())
            .await
            .unwrap_or_else(|_| panic!("client {n} never accepted:\n{}", logs.text()));
    }
    assert!(logs.text().contains("accepting again"), "{}", logs.text());
    assert_eq!(
        logs.text().matches("out of resources").count(),
        1,
        "{}",
        logs.text()
    );

    shutdown.cancel();
    loop_task.await.unwrap();
    drop((filler, clients));
}
