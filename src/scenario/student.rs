//! A student's server plugged into the network: started from a command
//! template in its own process group, waited for until its ports accept,
//! stopped with its whole process tree, its output kept for the report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How to start students' servers.
#[derive(Debug, Clone)]
pub struct StudentSetup {
    /// A shell command; `{server}` and `{domain}` are replaced (e.g. `python3 server.py -n {server}`).
    pub command: String,
    /// Where it runs; `data/config.toml` and `data/fdns.toml` are written here.
    pub dir: PathBuf,
    /// How long its ports may take to open.
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

/// A free port on loopback, as the kernel hands one out.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl StudentServer {
    /// Starts the server `name` (hosting `domain`) and waits until both ports accept.
    pub async fn start(
        setup: &StudentSetup,
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
            .current_dir(&setup.dir)
            .stdin(Stdio::null());
        cmd.stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // Its own process group, so the whole tree can be stopped.
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{command}` in {}: {e}", setup.dir.display()))?;
        let group = child
            .id()
            .ok_or_else(|| format!("`{command}` exited at once"))?;
        let mut server = StudentServer {
            name: name.to_string(),
            child,
            group,
            output,
            _logs: logs,
        };
        let deadline = Instant::now() + setup.startup;
        for port in ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                if let Ok(Some(status)) = server.child.try_wait() {
                    return Err(format!("student server {name} exited ({status}) before opening port {port}; its output:\n{}", server.output_tail()));
                }
                if Instant::now() >= deadline {
                    let tail = server.output_tail();
                    server.stop().await;
                    return Err(format!("student server {name} did not open port {port} within {:?}; its output:\n{tail}", setup.startup));
                }
                // Waiting on the port with a deadline; a connect attempt is the only signal there is.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
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
    /// two seconds, KILL (and KILL for anything the group left behind).
    pub async fn stop(&mut self) {
        signal_group(self.group, "-TERM");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        signal_group(self.group, "-KILL");
        let _ = self.child.wait().await;
    }
}

/// Signals a process group, quietly: a group already gone is not an error here.
fn signal_group(group: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for StudentServer {
    /// A server never stopped (the run was cancelled) is killed, tree and all.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal_group(self.group, "-KILL");
        }
    }
}
