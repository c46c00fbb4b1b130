//! A student's server plugged into the network: started from a command
//! template in its own process group in a private copy of the submission,
//! given the course's setup time to open its ports, stopped with its whole
//! process tree, its output kept for the report.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How to start students' servers.
#[derive(Debug, Clone)]
pub struct StudentSetup {
    /// A shell command; `{server}` is replaced by the server's name and
    /// `{domain}` by the fixture's `domain` (e.g. `python3 server.py -n {domain}`).
    pub command: String,
    /// The submission: copied into a private folder for each student, where
    /// `data/config.toml` and `data/fdns.toml` are written.
    pub dir: PathBuf,
    /// How long its ports may take to open: the course waits 2 s, then runs the steps anyway.
    pub startup: Duration,
}

/// A running student server.
pub struct StudentServer {
    name: String,
    child: tokio::process::Child,
    /// Its process group (the leader's pid): the group is signalled, not just the leader.
    group: u32,
    output: PathBuf,
    _logs: tempfile::TempDir,
}

/// A free port for a student's server to bind.
///
/// The port is released before the student's process binds it, so it is
/// chosen below the kernel's ephemeral range: a port the kernel hands out
/// for `bind(0)` or an outgoing connection's source (mailnet's own servers,
/// the grader's clients, other jobs) could otherwise take it in between and
/// the student's server would fail with "Address already in use". Ports
/// handed out recently by this process are not handed out again, and a
/// random start keeps parallel `mailnet test` processes apart.
pub fn free_port() -> std::io::Result<u16> {
    use std::collections::VecDeque;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    /// Enough for every scenario of many parallel jobs to be still running.
    const REMEMBERED: usize = 2048;
    static RECENT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());

    let (first, end) = (10_000u32, u32::from(ephemeral_start()).max(10_000));
    if end - first < 4 * REMEMBERED as u32 {
        // A machine whose ephemeral range starts low: take what the kernel gives.
        return Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port());
    }
    let span = end - first;
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    for step in 0..span {
        let port = (first + (start + step) % span) as u16;
        if recent.contains(&port) || listening(port) {
            continue;
        }
        // Both, as a student's server may bind either.
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            if recent.len() == REMEMBERED {
                recent.pop_front();
            }
            recent.push_back(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port between {first} and {end}"),
    ))
}

/// The first port of the kernel's ephemeral range (32768 when unreadable).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Whether some socket on this machine listens on TCP `port`, read from the
/// kernel's socket tables: no connection is made, so the student's server
/// sees only the grader's sessions, as under the course's grader.
pub fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X} ");
    let mut known = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        known = true;
        // Fields: sl local_address rem_address st …; st 0A is LISTEN.
        if text.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = fields.next().unwrap_or("");
            let state = fields.nth(1).unwrap_or("");
            state == "0A" && format!("{local} ").ends_with(&wanted)
        }) {
            return true;
        }
    }
    // Without the tables, a connection attempt is the only way to know.
    !known && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

impl StudentServer {
    /// Starts the server `name` (the fixture calls it `domain`) in `dir`, and
    /// waits at most `setup.startup` for its ports to listen. A server that is
    /// not listening by then still runs: the steps find out, as the course's do.
    pub async fn start(
        setup: &StudentSetup,
        dir: &Path,
        name: &str,
        domain: &str,
        ports: [u16; 2],
    ) -> Result<StudentServer, String> {
        let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = logs.path().join("output.log");
        let log = std::fs::File::create(&output).map_err(|e| e.to_string())?;
        let command = setup
            .command
            .replace("{server}", name)
            .replace("{domain}", domain);
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&command)
            .current_dir(dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd.stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // Its own process group, so the whole tree can be stopped.
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{command}` in {}: {e}", dir.display()))?;
        let group = child.id().unwrap_or(0);
        let mut server = StudentServer {
            name: name.to_string(),
            child,
            group,
            output,
            _logs: logs,
        };
        // Checked: past what Instant holds is as good as waiting for ever.
        let deadline = Instant::now().checked_add(setup.startup);
        while !ports.iter().all(|&p| listening(p))
            && deadline.is_none_or(|deadline| Instant::now() < deadline)
        {
            if let Ok(Some(_)) = server.child.try_wait() {
                break;
            }
            // The kernel's tables have no change signal: look again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(server)
    }

    /// The last lines the server printed.
    pub fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the whole process tree: TERM, then, if it has not exited within
    /// a second, KILL (and KILL for anything the group left behind).
    pub async fn stop(&mut self) {
        signal_group(self.group, "-TERM");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await;
        signal_group(self.group, "-KILL");
        let _ = self.child.wait().await;
    }
}

/// Signals a process group, quietly: a group already gone is not an error here.
fn signal_group(group: u32, signal: &str) {
    if group == 0 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for StudentServer {
    /// A server never stopped (the run was cancelled) is killed, tree and all.
    fn drop(&mut self) {
        signal_group(self.group, "-KILL");
    }
}

/// Copies the folder `from` into `to` (created), leaving out `.git` and
/// Python's caches: a student's own files are never written to.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" || name == "__pycache__" {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_ports_are_outside_the_ephemeral_range_and_never_repeat_soon() {
        let end = ephemeral_start();
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        if end >= 10_000 + 4 * 2048 {
            assert!(ports.iter().all(|p| (10_000..end).contains(p)), "{ports:?}");
        }
        // Each is free to bind when handed out.
        let last = *ports.last().unwrap();
        drop(std::net::TcpListener::bind(("127.0.0.1", last)).unwrap());
    }
}
