//! Reading a mailbox over POP3 with the project's POP3 client.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::agent::submit::TlsChoice;
use crate::pop3::client::ClientError;

use crate::pop3::client::Pop3Client;

/// A POP3 failure, one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// The server could not be reached or broke the connection.
    #[error("cannot reach {server}")]
    Unreachable {
        /// Where.
        server: SocketAddr,
        /// Why.
        #[source]
        source: crate::pop3::client::ClientError,
    },
    /// Login refused.
    #[error("login refused by {server}: {reply}")]
    Login {
        /// Where.
        server: SocketAddr,
        /// The `-ERR` line.
        reply: String,
    },
    /// A command refused.
    #[error("{server} refused {command}: {reply}")]
    Refused {
        /// Where.
        server: SocketAddr,
        /// The command.
        command: String,
        /// The `-ERR` line.
        reply: String,
    },
}

/// One message as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its number in this session.
    pub number: usize,
    /// Its size in octets.
    pub size: u64,
    /// Its unique id.
    pub uid: String,
}

/// A logged-in POP3 session: what `mailnet fetch` reads a mailbox through.
pub struct Pop3Session {
    client: Pop3Client<Box<dyn Connection>>,
    server: SocketAddr,
}

pub use crate::wire::Connection;

impl Pop3Session {
    /// Connects and logs in with USER/PASS, in clear.
    pub async fn open(
        server: SocketAddr,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Pop3Session, MailboxError> {
        Pop3Session::open_with(server, user, password, timeout, TlsChoice::Off, None).await
    }

    /// Connects, secures the session as `tls` says (STLS, RFC 2595, or
    /// implicit TLS, RFC 8314) verifying with `connector`, and logs in with
    /// USER/PASS.
    pub async fn open_with(
        server: SocketAddr,
        user: &str,
        password: &str,
        timeout: Duration,
        tls: TlsChoice,
        connector: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Pop3Session, MailboxError> {
        let unreachable = |source| MailboxError::Unreachable { server, source };
        let connector = connector.filter(|_| tls != TlsChoice::Off);
        let name = tokio_rustls::rustls::pki_types::ServerName::from(server.ip());
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(server))
            .await
            .map_err(|_| unreachable(ClientError::Timeout(timeout)))?
            .map_err(|e| unreachable(e.into()))?;
        let secure = |tcp: Box<dyn Connection>| async {
            let connector = connector.ok_or_else(|| {
                unreachable(ClientError::Malformed("no CA to verify TLS with".into()))
            })?;
            tokio::time::timeout(timeout, connector.connect(name.clone(), tcp))
                .await
                .map_err(|_| unreachable(ClientError::Timeout(timeout)))?
                .map_err(|e| unreachable(e.into()))
        };
        let mut client: Pop3Client<Box<dyn Connection>> = if tls == TlsChoice::Implicit {
            Pop3Client::new(Box::new(secure(Box::new(tcp)).await?), timeout)
        } else {
            Pop3Client::new(Box::new(tcp), timeout)
        };
        let greeting = client.status().await.map_err(unreachable)?;
        if !greeting.ok {
            return Err(MailboxError::Refused {
                server,
                command: "the connection".into(),
                reply: greeting.line,
            });
        }
        if connector.is_some() && matches!(tls, TlsChoice::Auto | TlsChoice::Starttls) {
            client.write(b"STLS\r\n").await.map_err(unreachable)?;
            let answer = client.status().await.map_err(unreachable)?;
            if answer.ok {
                // The session starts over, encrypted (RFC 2595 §4).
                let inner = client.into_inner();
                client = Pop3Client::new(Box::new(secure(inner).await?), timeout);
            } else if tls == TlsChoice::Starttls {
                return Err(MailboxError::Refused {
                    server,
                    command: "STLS".into(),
                    reply: answer.line,
                });
            }
        }
        let mut mailbox = Pop3Session { client, server };
        for command in [format!("USER {user}"), format!("PASS {password}")] {
            mailbox.status(&command).await.map_err(|e| match e {
                MailboxError::Refused { server, reply, .. } => {
                    MailboxError::Login { server, reply }
                }
                other => other,
            })?;
        }
        Ok(mailbox)
    }

    fn unreachable(&self, e: crate::pop3::client::ClientError) -> MailboxError {
        MailboxError::Unreachable {
            server: self.server,
            source: e,
        }
    }

    async fn multiline(&mut self, command: &str) -> Result<Vec<u8>, MailboxError> {
        let (status, body) = self
            .client
            .multiline(command)
            .await
            .map_err(|e| self.unreachable(e))?;
        if !status.ok {
            return Err(MailboxError::Refused {
                server: self.server,
                command: command.to_string(),
                reply: status.line,
            });
        }
        Ok(body)
    }

    /// A command whose `+OK` is followed by a dot-terminated body (TOP, CAPA).
    pub async fn status_multiline(&mut self, command: &str) -> Result<Vec<u8>, MailboxError> {
        self.multiline(command).await
    }

    /// Every message: number, size and unique id.
    pub async fn list(&mut self) -> Result<Vec<Entry>, MailboxError> {
        let sizes = String::from_utf8_lossy(&self.multiline("LIST").await?).into_owned();
        let uids = String::from_utf8_lossy(&self.multiline("UIDL").await?).into_owned();
        let uid_of: std::collections::HashMap<&str, &str> =
            uids.lines().filter_map(|l| l.split_once(' ')).collect();
        Ok(sizes
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(n, size)| {
                Some(Entry {
                    number: n.parse().ok()?,
                    size: size.trim().parse().ok()?,
                    uid: uid_of
                        .get(n)
                        .map(|u| u.trim().to_string())
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Message `number`, whole.
    pub async fn retr(&mut self, number: usize) -> Result<Vec<u8>, MailboxError> {
        self.multiline(&format!("RETR {number}")).await
    }

    /// The headers of message `number`.
    pub async fn headers(&mut self, number: usize) -> Result<Vec<u8>, MailboxError> {
        self.multiline(&format!("TOP {number} 0")).await
    }

    /// Marks message `number` deleted (applied at [`Pop3Session::quit`]).
    pub async fn dele(&mut self, number: usize) -> Result<(), MailboxError> {
        self.status(&format!("DELE {number}")).await.map(|_| ())
    }

    /// Sends a one-line command; its `+OK` line, or `Refused` with the `-ERR` line.
    pub async fn status(&mut self, command: &str) -> Result<String, MailboxError> {
        let reply = self
            .client
            .command(command)
            .await
            .map_err(|e| self.unreachable(e))?;
        if !reply.ok {
            return Err(MailboxError::Refused {
                server: self.server,
                command: command.to_string(),
                reply: reply.line,
            });
        }
        Ok(reply.line)
    }

    /// Ends the session, applying deletions.
    pub async fn quit(mut self) -> Result<(), MailboxError> {
        self.status("QUIT").await.map(|_| ())
    }
}
