//! Delivering queued mail for one domain: resolve its MX, connect, and send
//! every queued message for it over one connection, pipelining when offered.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use super::downgrade::{self, DowngradeError, Unconvertible};
use crate::resolve::{MailResolver, ResolveError};
use crate::smtp::client::{
    Capabilities, ClientError, RecipientOutcome, Response, Route, SmtpClient, Stage,
};

/// Why a recipient was not delivered (this time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A server answered, and refused.
    Refused {
        /// The server, as `host[ip:port]`.
        remote: String,
        /// The step it refused.
        stage: Stage,
        /// Its reply.
        reply: Response,
    },
    /// No server of the domain could be reached, or the session broke.
    Unreachable(String),
    /// The domain's mail server could not be found.
    Dns(ResolveError),
    /// DNS says the domain has no mail server.
    NoMailServer(String),
    /// Something failed here, not at the next server (converting the
    /// message to 7-bit could not write its copy): try again later.
    Local(String),
    /// The next server lacks an extension the message needs and it cannot
    /// be converted (RFC 6152 §3, RFC 6531 §3.2).
    Unsupported {
        /// The server, as `host[ip:port]`.
        remote: String,
        /// What is missing, and the status for it.
        what: Unsupported,
    },
}

/// An extension a message needs that the next server does not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// 8-bit content to a server without `8BITMIME`, and the message
    /// cannot be converted to 7-bit, for this reason.
    EightBitMime(Unconvertible),
    /// UTF-8 addresses or headers to a server without `SMTPUTF8`.
    SmtpUtf8,
}

impl Cause {
    /// The remote server that answered, if one did.
    pub fn remote(&self) -> Option<&str> {
        match self {
            Cause::Refused { remote, .. } | Cause::Unsupported { remote, .. } => Some(remote),
            _ => None,
        }
    }

    /// The RFC 3463 status for a delivery report.
    pub fn status(&self) -> String {
        match self {
            Cause::Refused { reply, .. } => reply.status_text(),
            Cause::Unreachable(_) => "4.4.1".into(),
            Cause::Local(_) => "4.3.0".into(),
            Cause::Dns(e) if e.is_temporary() => "4.4.3".into(),
            Cause::Dns(_) | Cause::NoMailServer(_) => "5.1.2".into(),
            Cause::Unsupported {
                what: Unsupported::EightBitMime(_),
                ..
            } => "5.6.3".into(),
            Cause::Unsupported {
                what: Unsupported::SmtpUtf8,
                ..
            } => "5.6.7".into(),
        }
    }
}

impl fmt::Display for Cause {
    /// Postfix's wording: `550 5.1.1 <x@y>: User unknown (in reply to RCPT TO command)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Refused { reply, stage, .. } => {
                write!(f, "{reply} (in reply to {})", stage.command())
            }
            Cause::Unreachable(reason) | Cause::Local(reason) => f.write_str(reason),
            Cause::Dns(e) => write!(f, "cannot find the mail server: {e}"),
            Cause::NoMailServer(domain) => write!(f, "no mail server for domain {domain}"),
            Cause::Unsupported { remote, what } => match what {
                Unsupported::EightBitMime(why) => write!(
                    f,
                    "the message has 8-bit content and {remote} does not offer 8BITMIME; it cannot be converted to 7-bit: {why}"
                ),
                Unsupported::SmtpUtf8 => write!(
                    f,
                    "the message needs SMTPUTF8 (UTF-8 addresses or headers) and {remote} does not offer it"
                ),
            },
        }
    }
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next server accepted it.
    Delivered {
        /// The next server (`mx.example [192.0.2.1]:25`).
        remote: String,
        /// Its reply to the message.
        reply: crate::smtp::client::Response,
    },
    /// Try again later: a 4xx, a refused connection, a timeout, a DNS failure.
    Temporary(Cause),
    /// Give up and bounce: a 5xx or a domain with no mail server.
    Permanent(Cause),
}

impl Outcome {
    fn of(remote: &str, recipient: RecipientOutcome) -> Outcome {
        match recipient {
            RecipientOutcome::Accepted(reply) => Outcome::Delivered {
                remote: remote.to_string(),
                reply,
            },
            RecipientOutcome::Refused { stage, reply } => {
                let temporary = reply.is_temporary();
                let cause = Cause::Refused {
                    remote: remote.to_string(),
                    stage,
                    reply,
                };
                if temporary {
                    Outcome::Temporary(cause)
                } else {
                    Outcome::Permanent(cause)
                }
            }
        }
    }
}

/// One queued message's share of a domain.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its queue entry.
    pub id: String,
    /// The reverse path (empty for a bounce).
    pub mail_from: String,
    /// Its recipients in this domain.
    pub recipients: Vec<String>,
    /// The message, on disk in the queue: read a chunk at a time as it is
    /// sent, so a delivery's memory does not grow with the message.
    pub message: crate::store::MessageFile,
    /// What its sender declared at `MAIL` (8-bit body, SMTPUTF8).
    pub body: crate::store::Body,
}

/// What a delivery attempt learned: an outcome per recipient of each job
/// it got to. A job missing at the end was never handed over (the session
/// broke before it), so only those jobs are retried.
pub type Attempt = Vec<Vec<Outcome>>;

/// How this server reaches the next one.
#[derive(Clone, Copy)]
pub struct Link<'a> {
    /// The name it says in EHLO.
    pub helo: &'a str,
    /// The deadline of every step.
    pub timeout: Duration,
    /// STARTTLS when the next server offers it, verifying its certificate
    /// for the MX host name with this connector (the network CA).
    pub tls: Option<&'a tokio_rustls::TlsConnector>,
    /// The network's faults, where each connection is marked as this
    /// server's relay before it is made (for `link:` faults).
    pub faults: &'a crate::fault::Faults,
    /// Where a 7-bit copy of a message is written for a next server
    /// without `8BITMIME` (the queue directory: same disk, same limits).
    pub scratch: &'a Path,
    /// Told each job's outcomes as soon as the next server has answered
    /// its message, before the session goes on: what was accepted is
    /// recorded at once, so neither a crash nor a stop sends it twice.
    pub acknowledged: Option<Acknowledge<'a>>,
}

/// What hears a job's outcomes the moment the next server gave them.
pub type Acknowledge<'a> = &'a (dyn Fn(&Job, &[Outcome]) + Sync);

/// Why a session ended before carrying its jobs.
enum Broken {
    /// The connection failed or broke.
    Client(ClientError),
    /// The server refused the session: its greeting or EHLO.
    Refused { stage: Stage, reply: Response },
}

impl From<ClientError> for Broken {
    fn from(error: ClientError) -> Broken {
        Broken::Client(error)
    }
}

/// Delivers `jobs` (all for `domain`); returns one outcome per recipient, job by job.
pub async fn deliver_domain(
    resolver: &MailResolver,
    link: Link<'_>,
    domain: &str,
    jobs: &[Job],
) -> Attempt {
    let timeout = link.timeout;
    let all = |outcome: Outcome| -> Attempt {
        jobs.iter()
            .map(|j| vec![outcome.clone(); j.recipients.len()])
            .collect()
    };
    let targets = match tokio::time::timeout(timeout, resolver.relay_targets(domain)).await {
        Ok(Ok(targets)) if !targets.is_empty() => targets,
        Ok(Ok(_)) => return all(Outcome::Permanent(Cause::NoMailServer(domain.into()))),
        Ok(Err(e)) if e.is_temporary() => return all(Outcome::Temporary(Cause::Dns(e))),
        Ok(Err(e)) => return all(Outcome::Permanent(Cause::Dns(e))),
        Err(_) => {
            return all(Outcome::Temporary(Cause::Unreachable(format!(
                "DNS lookup for {domain} timed out after {timeout:?}"
            ))))
        }
    };
    let mut rest = Outcome::Temporary(Cause::Unreachable(String::new()));
    let mut results: Attempt = Vec::with_capacity(jobs.len());
    for (host, addr) in targets {
        match session(link, &host, addr, &jobs[results.len()..], &mut results).await {
            Ok(()) => return results,
            Err(Broken::Client(e)) => {
                rest = Outcome::Temporary(Cause::Unreachable(format!(
                    "connect to {host}[{addr}]: {e}"
                )))
            }
            // A refused greeting or EHLO counts like any refusal: 4xx is
            // tried again (here at the next MX, later with back-off), 5xx
            // bounces.
            Err(Broken::Refused { stage, reply }) => {
                let permanent = reply.code >= 500;
                let cause = Cause::Refused {
                    remote: format!("{host}[{addr}]"),
                    stage,
                    reply,
                };
                if permanent {
                    rest = Outcome::Permanent(cause);
                    break;
                }
                rest = Outcome::Temporary(cause);
            }
        }
    }
    // Jobs handed over before the session broke keep their outcomes; the
    // rest wait for the next attempt (or bounce, after a 5xx greeting).
    for job in &jobs[results.len()..] {
        results.push(vec![rest.clone(); job.recipients.len()]);
    }
    results
}

/// The `MAIL` parameters to declare `job` to a server offering `caps`,
/// and whether its body must first be converted to 7-bit; or what the
/// server lacks. `BODY=8BITMIME` goes with 8-bit content (or a sender that
/// declared it); to a server without `8BITMIME`, 8-bit bodies are
/// converted (RFC 6152 §3) but 8-bit headers cannot be. `SMTPUTF8` goes when
/// an address or the header block is UTF-8 (an SMTPUTF8 message whose
/// envelope and headers are ASCII goes without it, as RFC 6531 allows).
fn parameters(job: &Job, caps: &Capabilities) -> Result<(Vec<&'static str>, bool), Unsupported> {
    let mut out = Vec::new();
    let content = job.message.eight_bit();
    let mut convert = false;
    if caps.eight_bit_mime {
        if job.body.eight_bit || content.any() {
            out.push("BODY=8BITMIME");
        }
    } else if content.headers {
        return Err(Unsupported::EightBitMime(Unconvertible::Header));
    } else {
        // A sender's BODY=8BITMIME over a 7-bit message needs nothing.
        convert = content.body;
    }
    let needs_utf8 = job.body.smtputf8
        && (!job.mail_from.is_ascii()
            || job.recipients.iter().any(|r| !r.is_ascii())
            || content.headers);
    if needs_utf8 {
        if !caps.smtputf8 {
            return Err(Unsupported::SmtpUtf8);
        }
        out.push("SMTPUTF8");
    }
    Ok((out, convert))
}

/// A 7-bit copy of `job`'s message for `remote`, or the outcome of every
/// recipient when there can be none.
async fn seven_bit(
    job: &Job,
    remote: &str,
    link: Link<'_>,
) -> Result<crate::store::MessageFile, Outcome> {
    let (message, scratch) = (job.message.clone(), link.scratch.to_path_buf());
    // Reading and writing the whole message: off the async threads.
    let converted = tokio::task::spawn_blocking(move || downgrade::seven_bit(&message, &scratch))
        .await
        .unwrap_or_else(|e| Err(DowngradeError::Io(std::io::Error::other(e))));
    match converted {
        Ok(copy) => {
            tracing::info!(server = %link.helo, id = %job.id, %remote, octets = copy.len(), "8-bit parts converted to 7-bit (quoted-printable or base64): the next server does not offer 8BITMIME");
            Ok(copy)
        }
        Err(DowngradeError::Unconvertible(why)) => Err(Outcome::Permanent(Cause::Unsupported {
            remote: remote.to_string(),
            what: Unsupported::EightBitMime(why),
        })),
        Err(error @ DowngradeError::Io(_)) => {
            Err(Outcome::Temporary(Cause::Local(error.to_string())))
        }
    }
}

/// One SMTP session carrying `jobs` to `host` at `addr`, over TLS when the
/// server offers STARTTLS and `link` can verify it, pushing each job's
/// outcomes onto `results` as soon as they are final. A failure of the
/// connection is an `Err`; the jobs already in `results` stay there.
async fn session(
    link: Link<'_>,
    host: &str,
    addr: SocketAddr,
    jobs: &[Job],
    results: &mut Attempt,
) -> Result<(), Broken> {
    let remote = format!("{host}[{addr}]");
    let (mut client, caps) = open(link, addr).await?;
    let Some(connector) = link.tls.filter(|_| caps.starttls) else {
        return Ok(carry(&mut client, &caps, &remote, jobs, results, link).await?);
    };
    match client.starttls(connector, host).await {
        Ok(mut secured) => {
            // RFC 3207 §4.2: the server forgot everything; EHLO again.
            let caps = hello(&mut secured, link.helo).await?;
            Ok(carry(&mut secured, &caps, &remote, jobs, results, link).await?)
        }
        Err(error) => {
            // A server whose certificate the network CA did not issue (a
            // student's, a real MTA's): opportunistic TLS, as Postfix's
            // `may` level, falls back to a clear session.
            tracing::warn!(%remote, %error, "STARTTLS failed; delivering without TLS");
            let (mut client, caps) = open(link, addr).await?;
            Ok(carry(&mut client, &caps, &remote, jobs, results, link).await?)
        }
    }
}

/// A clear session up to EHLO's answer.
async fn open(
    link: Link<'_>,
    addr: SocketAddr,
) -> Result<(SmtpClient<TcpStream>, Capabilities), Broken> {
    // Bound first and marked as this server's relay, so the next server
    // knows the session for a link from its very first byte; the mark
    // lasts until the greeting is read, when the session surely began.
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ClientError::Io)?;
    let any = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    socket.bind(any).map_err(ClientError::Io)?;
    let port = socket.local_addr().map_err(ClientError::Io)?.port();
    let _mark = link.faults.mark_relay(port, link.helo);
    let stream = tokio::time::timeout(link.timeout, socket.connect(addr))
        .await
        .map_err(|_| ClientError::Timeout(link.timeout))?
        .map_err(ClientError::Io)?;
    let _ = stream.set_nodelay(true);
    let mut client = SmtpClient::new(stream, link.timeout);
    let greeting = client.read_reply().await?;
    if greeting.code != 220 {
        return Err(Broken::Refused {
            stage: Stage::Greeting,
            reply: greeting,
        });
    }
    let caps = hello(&mut client, link.helo).await?;
    Ok((client, caps))
}

async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    helo: &str,
) -> Result<Capabilities, Broken> {
    match client.hello(helo).await? {
        Ok(caps) => Ok(caps),
        Err(reply) => Err(Broken::Refused {
            stage: Stage::Hello,
            reply,
        }),
    }
}

/// The transactions of one session, plain or encrypted.
async fn carry<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    caps: &Capabilities,
    remote: &str,
    jobs: &[Job],
    results: &mut Attempt,
    link: Link<'_>,
) -> Result<(), ClientError> {
    let mut needs_reset = false;
    for job in jobs {
        if needs_reset {
            client.command("RSET").await?;
        }
        let (parameters, convert) = match parameters(job, caps) {
            Ok(parameters) => parameters,
            Err(what) => {
                let cause = Cause::Unsupported {
                    remote: remote.to_string(),
                    what,
                };
                results.push(vec![Outcome::Permanent(cause); job.recipients.len()]);
                continue;
            }
        };
        let message = if convert {
            match seven_bit(job, remote, link).await {
                Ok(copy) => copy,
                Err(outcome) => {
                    results.push(vec![outcome; job.recipients.len()]);
                    continue;
                }
            }
        } else {
            job.message.clone()
        };
        let route = Route {
            mail_from: &job.mail_from,
            recipients: &job.recipients,
            parameters: &parameters,
        };
        let tx = client
            .send_mail_from(route, message.reader(), caps.pipelining)
            .await?;
        needs_reset = tx.needs_reset();
        let outcomes: Vec<Outcome> = tx
            .outcomes(job.recipients.len())
            .into_iter()
            .map(|o| Outcome::of(remote, o))
            .collect();
        if let Some(acknowledged) = link.acknowledged {
            acknowledged(job, &outcomes);
        }
        results.push(outcomes);
    }
    client.quit().await;
    Ok(())
}
