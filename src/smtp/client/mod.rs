//! The project's one SMTP client: relay, `mailnet send`, the grader (in its
//! smtplib-exact mode, built on the raw line calls) and the load generator
//! all speak SMTP through it.
//!
//! - [`response`]: a reply as a client reads it (smtp-proto's parser).
//! - [`transaction`]: MAIL, RCPT and DATA with a typed outcome per recipient.
//! - [`stream`]: a message sent from a reader, dot-stuffed a chunk at a time.
//! - [`Stage`]: which step of a session a reply answered.

mod response;
mod stream;
mod transaction;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;

pub use response::{Capabilities, Response};
pub use stream::CHUNK;
pub use transaction::{Envelope, RecipientOutcome, Route, Transaction};

use crate::transcript::Line;
pub use crate::wire::ClientError;

/// Longest reply line read (RFC 5321 §4.5.3.1.5 says 512; real servers send more).
const MAX_REPLY_LINE: usize = 4096;

/// Which step of an SMTP session a reply answered: scoring, bounces and
/// error messages match on this, never on words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The greeting.
    Greeting,
    /// EHLO, or HELO after EHLO was refused.
    Hello,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// The DATA command.
    Data,
    /// The message's final dot.
    EndOfData,
}

impl Stage {
    /// How a bounce names it, as Postfix does: "(in reply to RCPT TO command)".
    pub fn command(self) -> &'static str {
        match self {
            Stage::Greeting => "the greeting",
            Stage::Hello => "EHLO command",
            Stage::Auth => "AUTH command",
            Stage::MailFrom => "MAIL FROM command",
            Stage::RcptTo => "RCPT TO command",
            Stage::Data => "DATA command",
            Stage::EndOfData => "end of DATA command",
        }
    }
}

impl fmt::Display for Stage {
    /// How a person names it: "the sender", "the message".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Greeting => "the connection",
            Stage::Hello => "HELO",
            Stage::Auth => "the login",
            Stage::MailFrom => "the sender",
            Stage::RcptTo => "the recipient",
            Stage::Data => "DATA",
            Stage::EndOfData => "the message",
        })
    }
}

/// Which SASL mechanism to log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMechanism {
    /// PLAIN when the server offers it, else LOGIN.
    #[default]
    Auto,
    /// RFC 4616 PLAIN.
    Plain,
    /// LOGIN (username, then password), as in the 163.com lab.
    Login,
}

/// A connected SMTP client.
pub struct SmtpClient<S> {
    stream: BufReader<S>,
    timeout: Duration,
    /// `C:`/`S:` lines, when asked for (`mailnet send --transcript`, the grader).
    transcript: Option<Vec<Line>>,
}

impl SmtpClient<TcpStream> {
    /// Connects within `timeout` and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(Self, Response), ClientError> {
        Self::open(addr, timeout, false).await
    }

    /// Connects, records the dialogue from the greeting on, and reads the greeting.
    pub async fn connect_recording(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(Self, Response), ClientError> {
        Self::open(addr, timeout, true).await
    }

    async fn open(
        addr: SocketAddr,
        timeout: Duration,
        record: bool,
    ) -> Result<(Self, Response), ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        let _ = stream.set_nodelay(true);
        let mut client = SmtpClient::new(stream, timeout);
        if record {
            client.record_transcript();
        }
        let greeting = client.read_reply().await?;
        Ok((client, greeting))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// `STARTTLS` (RFC 3207), then the TLS handshake for `name`, verified
    /// by `connector`'s roots. The session goes on encrypted; say EHLO
    /// again, since the server forgot the clear part. A refusal or a failed
    /// handshake is an error: the connection is not usable afterwards.
    pub async fn starttls(
        mut self,
        connector: &tokio_rustls::TlsConnector,
        name: &str,
    ) -> Result<SmtpClient<tokio_rustls::client::TlsStream<S>>, ClientError> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != 220 {
            return Err(ClientError::Malformed(format!("STARTTLS refused: {reply}")));
        }
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| ClientError::Malformed(format!("{name}: {e}")))?;
        let SmtpClient {
            stream,
            timeout,
            mut transcript,
        } = self;
        // Anything the server sent after its 220 came in clear: dropped.
        let secured = tokio::time::timeout(timeout, connector.connect(name, stream.into_inner()))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        if let Some(lines) = transcript.as_mut() {
            let info = crate::tls::TlsInfo::of(secured.get_ref().1);
            lines.push(Line::server(format!("[TLS established ({info})]")));
        }
        Ok(SmtpClient {
            stream: BufReader::new(secured),
            timeout,
            transcript,
        })
    }

    /// The connection, for a TLS upgrade done by the caller. Anything
    /// buffered but not read is dropped: after `220` it came in clear.
    pub fn into_inner(self) -> S {
        self.stream.into_inner()
    }

    /// Wraps a connected stream (the greeting not yet read). Every read and
    /// write waits at most `timeout`.
    pub fn new(stream: S, timeout: Duration) -> Self {
        SmtpClient {
            stream: BufReader::new(stream),
            timeout,
            transcript: None,
        }
    }

    /// Starts recording the dialogue.
    pub fn record_transcript(&mut self) {
        self.transcript.get_or_insert_with(Vec::new);
    }

    /// Takes the lines recorded so far.
    pub fn take_transcript(&mut self) -> Vec<Line> {
        self.transcript
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Records a line of the dialogue (for callers that frame replies themselves).
    pub fn note_line(&mut self, line: Line) {
        if let Some(t) = self.transcript.as_mut() {
            t.push(line);
        }
    }

    /// Reads one raw line, newline included, of at most `limit + 1` bytes
    /// (so a caller can tell a line longer than `limit`); empty at end of stream.
    pub async fn read_line_raw(&mut self, limit: usize) -> Result<Vec<u8>, ClientError> {
        crate::wire::read_line_limited(&mut self.stream, limit, self.timeout).await
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> Result<Response, ClientError> {
        self.read_reply_lines().await.map(|(reply, _)| reply)
    }

    /// Reads one reply, and also returns its lines as the server sent them
    /// (without line ends), for callers that show the exact text.
    pub async fn read_reply_lines(&mut self) -> Result<(Response, Vec<String>), ClientError> {
        let mut parser = response::Parser::default();
        let mut raw = Vec::new();
        loop {
            let line = self.read_line_raw(MAX_REPLY_LINE).await?;
            if line.is_empty() {
                return Err(ClientError::Closed);
            }
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            self.note_line(Line::server(text.clone()));
            raw.push(text);
            if let Some(reply) = parser.feed(&line)? {
                return Ok((reply, raw));
            }
        }
    }

    /// Sends raw bytes within the timeout.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        crate::wire::write_flushed(self.stream.get_mut(), bytes, self.timeout).await
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Response, ClientError> {
        self.command_shown(line, line).await
    }

    /// Sends `line` but records `shown` in the transcript (credentials stay out of logs).
    async fn command_shown(&mut self, line: &str, shown: &str) -> Result<Response, ClientError> {
        self.note_line(Line::client(shown));
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// Sends several commands in one write (PIPELINING) and reads a reply for each.
    pub async fn pipeline(&mut self, lines: &[String]) -> Result<Vec<Response>, ClientError> {
        let mut batch = String::new();
        for line in lines {
            self.note_line(Line::client(line.as_str()));
            batch.push_str(line);
            batch.push_str("\r\n");
        }
        self.write(batch.as_bytes()).await?;
        let mut replies = Vec::with_capacity(lines.len());
        for _ in lines {
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }

    /// Sends a message after a `354`: dot-stuffed, CRLF-terminated, then `.`; reads the reply.
    pub async fn send_message(&mut self, message: &[u8]) -> Result<Response, ClientError> {
        if self.transcript.is_some() {
            for line in crate::transcript::abbreviate_message(message) {
                self.note_line(line);
            }
        }
        let mut wire = Vec::with_capacity(message.len() + 64);
        crate::wire::stuffed(message, &mut wire);
        self.write(&wire).await?;
        self.read_reply().await
    }

    /// Says EHLO, or HELO when EHLO is refused; `Err` carries the refusal.
    pub async fn hello(
        &mut self,
        name: &str,
    ) -> Result<Result<Capabilities, Response>, ClientError> {
        let ehlo = self.command(&format!("EHLO {name}")).await?;
        if ehlo.code == 250 {
            return Ok(Ok(Capabilities::from_ehlo(&ehlo)));
        }
        let helo = self.command(&format!("HELO {name}")).await?;
        Ok(if helo.code == 250 {
            Ok(Capabilities::default())
        } else {
            Err(helo)
        })
    }

    /// Logs in with `mechanism` (PLAIN or LOGIN, picked from `offered` for
    /// `Auto`); returns the final reply (`235` on success). The transcript
    /// shows the mechanism, never the credentials.
    pub async fn authenticate(
        &mut self,
        user: &str,
        password: &str,
        mechanism: AuthMechanism,
        offered: &Capabilities,
    ) -> Result<Response, ClientError> {
        let plain = match mechanism {
            AuthMechanism::Plain => true,
            AuthMechanism::Login => false,
            AuthMechanism::Auto => offered.auth_plain,
        };
        if plain {
            let token = B64.encode(format!("\0{user}\0{password}"));
            return self
                .command_shown(&format!("AUTH PLAIN {token}"), "AUTH PLAIN [credentials]")
                .await;
        }
        let mut reply = self.command("AUTH LOGIN").await?;
        if reply.code == 334 {
            reply = self.command_shown(&B64.encode(user), "[user name]").await?;
        }
        if reply.code == 334 {
            reply = self
                .command_shown(&B64.encode(password), "[password]")
                .await?;
        }
        Ok(reply)
    }

    /// Ends the session politely; the reply does not matter.
    pub async fn quit(&mut self) {
        let _ = self.command("QUIT").await;
    }
}

#[cfg(test)]
mod tests;
