//! A `mailnet up` process, as an operator runs it: its ports read back
//! from the table it prints, its peak memory, and how fast SIGTERM ends it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mailnet");

/// A running `mailnet up --ephemeral` on the default network.
pub struct Up {
    child: Option<Child>,
    pid: u32,
    /// `server -> (SMTP port, POP3 port)`, from the table.
    ports: HashMap<String, (u16, u16)>,
    /// The data directory.
    pub data: PathBuf,
}

impl Up {
    /// Starts the default network with its data in `data`, plus `args`,
    /// and waits for `ready`.
    pub fn start(data: &Path, args: &[&str]) -> Up {
        let mut child = Command::new(BIN)
            .args(["--quiet", "up", "--ephemeral", "--data-dir"])
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut ports = HashMap::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.starts_with("ready") {
                break;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [server, _domains, smtp, pop3, ..] = words[..] {
                if let (Ok(smtp), Ok(pop3)) = (smtp.parse(), pop3.parse()) {
                    ports.insert(server.to_string(), (smtp, pop3));
                }
            }
        }
        assert!(!ports.is_empty(), "mailnet up printed no table");
        // Keep reading stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Up {
            child: Some(child),
            pid,
            ports,
            data: data.to_path_buf(),
        }
    }

    /// The SMTP address of `server`.
    pub fn smtp(&self, server: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[server].0))
    }

    /// The POP3 address of `server`.
    pub fn pop3(&self, server: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[server].1))
    }

    /// The process id, for reading its `/proc` files.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The most memory the process has held (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Sends SIGTERM and waits up to `deadline` for the process to exit;
    /// returns how long it took and how it ended.
    pub fn terminate(&mut self, deadline: Duration) -> (Duration, ExitStatus) {
        let mut child = self.child.take().expect("still running");
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let (done, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = done.send(status);
        });
        match exited.recv_timeout(deadline) {
            Ok(status) => (started.elapsed(), status.unwrap()),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
                panic!("mailnet up was still running {deadline:?} after SIGTERM");
            }
        }
    }
}

impl Up {
    /// SIGKILL: no shutdown, no flush; waits for the process to be gone.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
