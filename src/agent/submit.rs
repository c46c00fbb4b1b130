//! Submitting a message: find the sender's submission server, log in, send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::locate::{locate, LocateError};
use crate::smtp::client::{ClientError, Envelope, RecipientOutcome, Response, SmtpClient, Stage};
use crate::transcript::Line;

pub use crate::smtp::client::AuthMechanism;

/// How to submit.
#[derive(Clone)]
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
    /// Whether and how to use TLS.
    pub tls: TlsChoice,
    /// What to trust for TLS (the network CA); TLS is not used without it.
    pub connector: Option<tokio_rustls::TlsConnector>,
}

/// How an agent uses TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsChoice {
    /// STARTTLS when the server offers it, else clear.
    #[default]
    Auto,
    /// STARTTLS, and fail when the server does not offer it.
    Starttls,
    /// TLS from the first byte (an SMTPS or POP3S port).
    Implicit,
    /// Never.
    Off,
}

/// Why a submission failed; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The server could not be found.
    #[error("cannot find the server: {0}")]
    Locate(#[source] LocateError),
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        /// Where.
        server: SocketAddr,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// Login refused.
    #[error("login refused by {server}: {reply}")]
    Auth {
        /// Where.
        server: SocketAddr,
        /// The reply.
        reply: Response,
    },
    /// A step refused by the server.
    #[error("{server} refused {stage}: {reply}")]
    Refused {
        /// Where.
        server: SocketAddr,
        /// Which step.
        stage: Stage,
        /// The reply.
        reply: Response,
    },
    /// Every recipient refused.
    #[error("{server} refused every recipient: {}", .refused.iter().map(|(r, why)| format!("<{r}>: {why}")).collect::<Vec<_>>().join("; "))]
    RecipientsRefused {
        /// Where.
        server: SocketAddr,
        /// Each recipient and the reply.
        refused: Vec<(String, Response)>,
    },
}

/// What a successful submission did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Where it went.
    pub server: SocketAddr,
    /// The server's final reply (`250 ... queued as ...`).
    pub reply: Response,
    /// Recipients the server refused while it took the message for the others.
    pub refused: Vec<(String, Response)>,
    /// The dialogue, credentials left out.
    pub transcript: Vec<Line>,
}

/// Whether a refusal says the server will not relay for this client
/// (`554 5.7.1 Relay access denied`, as Postfix and mailnet word it).
pub fn relay_denied(reply: &Response) -> bool {
    matches!(reply.code, 550 | 554)
        && reply.status == Some([5, 7, 1])
        && reply.text().to_ascii_lowercase().contains("relay")
}

/// Submits `message` from `mail_from` to `recipients`.
pub async fn submit(
    message: &[u8],
    mail_from: &str,
    recipients: &[String],
    options: &SubmitOptions,
) -> Result<Submitted, SubmitError> {
    let domain = crate::smtp::address::domain_of(mail_from).unwrap_or_default();
    let server = locate(
        options.server.as_deref(),
        options.dns,
        "_submission",
        &domain,
    )
    .await
    .map_err(SubmitError::Locate)?;
    let unreachable = |source| SubmitError::Unreachable { server, source };
    let refused = |stage, reply| SubmitError::Refused {
        server,
        stage,
        reply,
    };
    // Certificates are checked against the address dialled: the network
    // CA's certificates name each server's published address too.
    let name = server.ip().to_string();
    let connector = options
        .connector
        .as_ref()
        .filter(|_| options.tls != TlsChoice::Off);
    if options.tls == TlsChoice::Implicit {
        let connector = connector.ok_or_else(|| {
            unreachable(ClientError::Malformed("no CA to verify TLS with".into()))
        })?;
        let tcp = tokio::time::timeout(options.timeout, TcpStream::connect(server))
            .await
            .map_err(|_| unreachable(ClientError::Timeout(options.timeout)))?
            .map_err(|e| unreachable(e.into()))?;
        let tls_name = tokio_rustls::rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| unreachable(ClientError::Malformed(e.to_string())))?;
        let secured = tokio::time::timeout(options.timeout, connector.connect(tls_name, tcp))
            .await
            .map_err(|_| unreachable(ClientError::Timeout(options.timeout)))?
            .map_err(|e| unreachable(e.into()))?;
        let mut client = SmtpClient::new(secured, options.timeout);
        client.record_transcript();
        let greeting = client.read_reply().await.map_err(unreachable)?;
        let caps = greet(&mut client, greeting, server, &options.helo).await?;
        return finish(
            client, caps, server, message, mail_from, recipients, options,
        )
        .await;
    }
    let (mut client, greeting) =
        SmtpClient::<TcpStream>::connect_recording(server, options.timeout)
            .await
            .map_err(unreachable)?;
    let caps = greet(&mut client, greeting, server, &options.helo).await?;
    match connector {
        Some(connector) if caps.starttls => {
            let mut secured = client
                .starttls(connector, &name)
                .await
                .map_err(unreachable)?;
            // After TLS the server forgot the clear part: EHLO again.
            let caps = secured
                .hello(&options.helo)
                .await
                .map_err(unreachable)?
                .map_err(|reply| refused(Stage::Hello, reply))?;
            finish(
                secured, caps, server, message, mail_from, recipients, options,
            )
            .await
        }
        _ if options.tls == TlsChoice::Starttls => Err(unreachable(ClientError::Malformed(
            "the server does not offer STARTTLS (--tls starttls)".into(),
        ))),
        _ => {
            finish(
                client, caps, server, message, mail_from, recipients, options,
            )
            .await
        }
    }
}

/// Checks the greeting and says EHLO; the server's extensions.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    greeting: Response,
    server: SocketAddr,
    helo: &str,
) -> Result<crate::smtp::client::Capabilities, SubmitError> {
    if greeting.code != 220 {
        return Err(SubmitError::Refused {
            server,
            stage: Stage::Greeting,
            reply: greeting,
        });
    }
    client
        .hello(helo)
        .await
        .map_err(|source| SubmitError::Unreachable { server, source })?
        .map_err(|reply| SubmitError::Refused {
            server,
            stage: Stage::Hello,
            reply,
        })
}

/// AUTH, the transaction and QUIT, over whatever stream the session has.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: SmtpClient<S>,
    caps: crate::smtp::client::Capabilities,
    server: SocketAddr,
    message: &[u8],
    mail_from: &str,
    recipients: &[String],
    options: &SubmitOptions,
) -> Result<Submitted, SubmitError> {
    let unreachable = |source| SubmitError::Unreachable { server, source };
    let refused = |stage, reply| SubmitError::Refused {
        server,
        stage,
        reply,
    };
    if let Some((user, password)) = &options.auth {
        let reply = client
            .authenticate(user, password, options.mechanism, &caps)
            .await
            .map_err(unreachable)?;
        if reply.code != 235 {
            return Err(SubmitError::Auth { server, reply });
        }
    }
    let envelope = Envelope {
        mail_from,
        recipients,
        message,
        parameters: &[],
    };
    let tx = client
        .send_mail(envelope, false)
        .await
        .map_err(unreachable)?;
    let mut accepted = None;
    let mut refused_rcpts = Vec::new();
    for (rcpt, outcome) in recipients.iter().zip(tx.outcomes(recipients.len())) {
        match outcome {
            RecipientOutcome::Accepted(reply) => accepted = Some(reply),
            RecipientOutcome::Refused {
                stage: Stage::RcptTo,
                reply,
            } => refused_rcpts.push((rcpt.clone(), reply)),
            // MAIL, DATA or the message refused: the same for everyone.
            RecipientOutcome::Refused { stage, reply } => return Err(refused(stage, reply)),
        }
    }
    client.quit().await;
    match accepted {
        Some(reply) => Ok(Submitted {
            server,
            reply,
            refused: refused_rcpts,
            transcript: client.take_transcript(),
        }),
        None => Err(SubmitError::RecipientsRefused {
            server,
            refused: refused_rcpts,
        }),
    }
}
