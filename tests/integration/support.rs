//! Helpers: boot a network on free ports, talk raw lines to a server.

use std::net::SocketAddr;
use std::time::Duration;

use mailnet::network::{Network, Policy};
use mailnet::orchestrator::{RunningNetwork, UpOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Boots the default network on free ports, with `policy` edits applied to every server.
pub async fn boot_with(edit: impl Fn(&mut Policy), options: UpOptions) -> RunningNetwork {
    let mut net = Network::default_network().with_ephemeral_ports();
    for server in &mut net.servers {
        server.policy.login_delay = Duration::from_millis(1);
        edit(&mut server.policy);
    }
    RunningNetwork::start(net, options)
        .await
        .expect("network boots")
}

/// Boots the default network on free ports.
pub async fn boot() -> RunningNetwork {
    boot_with(|_| {}, UpOptions::default()).await
}

/// A raw line-level connection, like telnet.
pub struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Raw {
            reader: BufReader::new(stream),
        }
    }

    /// A connection already open.
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            reader: BufReader::new(stream),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.expect("write");
    }

    /// Reads one line (without CRLF); empty string at end of stream.
    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("a line within 10 s")
            .expect("read");
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    /// Reads one SMTP reply (all its lines), returned joined by '\n'.
    pub async fn reply(&mut self) -> String {
        let mut all = Vec::new();
        loop {
            let line = self.line().await;
            let more = line.as_bytes().get(3) == Some(&b'-');
            all.push(line);
            if !more {
                return all.join("\n");
            }
        }
    }

    /// Sends a line, returns the SMTP reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Sends a POP3 line, returns the status line.
    pub async fn pop(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.line().await
    }

    /// Reads a dot-terminated POP3 body (still stuffed).
    pub async fn body(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            if line == "." {
                return lines;
            }
            lines.push(line);
        }
    }

    pub fn into_stream(self) -> TcpStream {
        self.reader.into_inner()
    }
}

/// Sends one message over SMTP with a raw dialogue; panics unless every step succeeds.
pub async fn send_mail(addr: SocketAddr, from: &str, to: &[&str], message: &str) {
    let mut c = Raw::connect(addr).await;
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO test.client").await.starts_with("250"));
    assert!(c
        .cmd(&format!("MAIL FROM:<{from}>"))
        .await
        .starts_with("250"));
    for rcpt in to {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(r.starts_with("250"), "{rcpt}: {r}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(message.as_bytes()).await;
    let r = c.cmd(".").await;
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
}

/// Asserts a failed command said exactly one line on stderr, containing
/// every one of `wanted`.
pub fn assert_one_line_error(out: &std::process::Output, wanted: &[&str]) {
    assert!(!out.status.success(), "the command succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for w in wanted {
        assert!(stderr.contains(w), "{w:?} missing: {stderr}");
    }
}

/// A port nothing listens on, for a peer a test starts later: chosen below
/// the ephemeral range, so no other test's connection takes it meanwhile.
pub fn unused_port() -> u16 {
    mailnet::scenario::student::free_port().unwrap()
}
