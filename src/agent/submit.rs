//! Finding a server through the network's DNS and submitting a message.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::net::TcpStream;

use crate::resolve::MailResolver;
use crate::smtp::client::{ClientError, SmtpClient};
use crate::smtp::Reply;
use crate::transcript::Line;

/// Which SASL mechanism to log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMechanism {
    /// PLAIN when the server offers it, else LOGIN.
    Auto,
    /// RFC 4616 PLAIN.
    Plain,
    /// LOGIN (username, then password), as in the 163.com lab.
    Login,
}

/// How to submit.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// `HOST:PORT` of the server; found through DNS (`SRV _submission._tcp.<sender domain>`) when `None`.
    pub server: Option<String>,
    /// The DNS to ask.
    pub dns: SocketAddr,
    /// User and password, to log in with AUTH.
    pub auth: Option<(String, String)>,
    /// The mechanism to log in with.
    pub mechanism: AuthMechanism,
    /// The name to give in EHLO.
    pub helo: String,
    /// How long to wait for the server at each step.
    pub timeout: Duration,
}

/// Why a submission failed; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The server could not be found.
    #[error("cannot find the server: {0}")]
    Locate(String),
    /// The server could not be reached.
    #[error("cannot reach {server}: {reason}")]
    Unreachable {
        /// Where.
        server: String,
        /// Why.
        reason: String,
    },
    /// Login refused.
    #[error("login refused by {server}: {reply}")]
    Auth {
        /// Where.
        server: String,
        /// The reply.
        reply: String,
    },
    /// A step refused by the server.
    #[error("{server} refused {stage}: {reply}")]
    Refused {
        /// Where.
        server: String,
        /// Which step.
        stage: String,
        /// The reply.
        reply: String,
    },
    /// Every recipient refused.
    #[error("{server} refused every recipient: {}", .refused.iter().map(|(r, why)| format!("<{r}>: {why}")).collect::<Vec<_>>().join("; "))]
    RecipientsRefused {
        /// Where.
        server: String,
        /// Each recipient and the reply.
        refused: Vec<(String, String)>,
    },
}

/// What a successful submission did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Where it went.
    pub server: SocketAddr,
    /// The server's final reply (`250 ... queued as ...`).
    pub reply: String,
    /// Recipients the server refused while it took the message for the others.
    pub refused: Vec<(String, String)>,
    /// The dialogue.
    pub transcript: Vec<Line>,
}

fn text(reply: &Reply) -> String {
    format!("{} {}", reply.code, reply.lines.join(" "))
}

/// The address of `server` (`HOST:PORT`), or of the `service` (`_submission`,
/// `_pop3`) of `domain` through DNS.
pub async fn locate(
    server: Option<&str>,
    dns: SocketAddr,
    service: &str,
    domain: &str,
) -> Result<SocketAddr, String> {
    let resolver = MailResolver::from_dns(dns);
    match server {
        Some(server) => {
            let (host, port) = server
                .rsplit_once(':')
                .ok_or_else(|| format!("{server}: expected HOST:PORT"))?;
            let port: u16 = port.parse().map_err(|_| format!("{server}: bad port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(SocketAddr::new(ip, port));
            }
            // A name of the simulated network first, then the system's resolver.
            if let Ok(ips) = resolver.addresses(host).await {
                if let Some(ip) = ips.first() {
                    return Ok(SocketAddr::new(*ip, port));
                }
            }
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("{host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host}: no address"))
        }
        None => resolver
            .service(service, domain)
            .await
            .map(|(_, addr)| addr)
            .map_err(|e| format!("{service}._tcp.{domain} through DNS {dns}: {e}")),
    }
}

/// Submits `message` from `mail_from` to `recipients`.
pub async fn submit(
    message: &[u8],
    mail_from: &str,
    recipients: &[String],
    options: &SubmitOptions,
) -> Result<Submitted, SubmitError> {
    let domain = crate::smtp::address::domain_of(mail_from).unwrap_or_default();
    let addr = locate(
        options.server.as_deref(),
        options.dns,
        "_submission",
        &domain,
    )
    .await
    .map_err(SubmitError::Locate)?;
    let server = addr.to_string();
    let unreachable = |e: ClientError| SubmitError::Unreachable {
        server: server.clone(),
        reason: e.to_string(),
    };
    let (mut client, greeting) = SmtpClient::<TcpStream>::connect_recording(addr, options.timeout)
        .await
        .map_err(unreachable)?;
    let refused = |stage: &str, reply: &Reply| SubmitError::Refused {
        server: server.clone(),
        stage: stage.to_string(),
        reply: text(reply),
    };
    if greeting.code != 220 {
        return Err(refused("the connection", &greeting));
    }
    let mut ehlo = client
        .command(&format!("EHLO {}", options.helo))
        .await
        .map_err(unreachable)?;
    if ehlo.code != 250 {
        ehlo = client
            .command(&format!("HELO {}", options.helo))
            .await
            .map_err(unreachable)?;
        if ehlo.code != 250 {
            return Err(refused("HELO", &ehlo));
        }
    }
    if let Some((user, password)) = &options.auth {
        let offers_plain = ehlo.lines.iter().any(|l| {
            l.to_ascii_uppercase().starts_with("AUTH") && l.to_ascii_uppercase().contains("PLAIN")
        });
        let plain = match options.mechanism {
            AuthMechanism::Plain => true,
            AuthMechanism::Login => false,
            AuthMechanism::Auto => offers_plain,
        };
        let reply = if plain {
            let token = B64.encode(format!("\0{user}\0{password}"));
            client
                .command(&format!("AUTH PLAIN {token}"))
                .await
                .map_err(unreachable)?
        } else {
            let mut reply = client.command("AUTH LOGIN").await.map_err(unreachable)?;
            if reply.code == 334 {
                reply = client
                    .command(&B64.encode(user))
                    .await
                    .map_err(unreachable)?;
            }
            if reply.code == 334 {
                reply = client
                    .command(&B64.encode(password))
                    .await
                    .map_err(unreachable)?;
            }
            reply
        };
        if reply.code != 235 {
            return Err(SubmitError::Auth {
                server: server.clone(),
                reply: text(&reply),
            });
        }
    }
    let mail = client
        .command(&format!("MAIL FROM:<{mail_from}>"))
        .await
        .map_err(unreachable)?;
    if mail.code != 250 {
        return Err(refused("the sender", &mail));
    }
    let mut refused_rcpts = Vec::new();
    for rcpt in recipients {
        let reply = client
            .command(&format!("RCPT TO:<{rcpt}>"))
            .await
            .map_err(unreachable)?;
        if reply.code >= 300 {
            refused_rcpts.push((rcpt.clone(), text(&reply)));
        }
    }
    if refused_rcpts.len() == recipients.len() {
        let _ = client.command("QUIT").await;
        return Err(SubmitError::RecipientsRefused {
            server: server.clone(),
            refused: refused_rcpts,
        });
    }
    let data = client.command("DATA").await.map_err(unreachable)?;
    if data.code != 354 {
        return Err(refused("DATA", &data));
    }
    let done = client.send_message(message).await.map_err(unreachable)?;
    if done.code != 250 {
        return Err(refused("the message", &done));
    }
    let _ = client.command("QUIT").await;
    Ok(Submitted {
        server: addr,
        reply: text(&done),
        refused: refused_rcpts,
        transcript: client.take_transcript(),
    })
}
