//! Submitting a message: find the sender's submission server, log in, send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::locate::{locate, LocateError};
use crate::smtp::client::{ClientError, Envelope, RecipientOutcome, Response, SmtpClient, Stage};
use crate::transcript::Line;

pub use crate::smtp::client::AuthMechanism;

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
    let (mut client, greeting) =
        SmtpClient::<TcpStream>::connect_recording(server, options.timeout)
            .await
            .map_err(unreachable)?;
    if greeting.code != 220 {
        return Err(refused(Stage::Greeting, greeting));
    }
    let caps = client
        .hello(&options.helo)
        .await
        .map_err(unreachable)?
        .map_err(|reply| refused(Stage::Hello, reply))?;
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
