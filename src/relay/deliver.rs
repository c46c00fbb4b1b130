//! Delivering queued mail for one domain: resolve its MX, connect, and send
//! every queued message for it over one connection, pipelining when offered.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::resolve::MailResolver;
use crate::smtp::client::{ClientError, SmtpClient};
use crate::smtp::Reply;

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next server accepted it.
    Delivered,
    /// Try again later: a 4xx, a refused connection, a timeout, a DNS failure.
    Temporary(String),
    /// Give up and bounce: a 5xx or a domain with no mail server.
    Permanent {
        /// The remote server that refused, if one answered.
        remote: Option<String>,
        /// The enhanced status code.
        status: String,
        /// The reply or reason.
        diagnostic: String,
    },
}

/// One queued message's share of a domain.
#[derive(Debug, Clone)]
pub struct Job {
    /// The reverse path (empty for a bounce).
    pub mail_from: String,
    /// Its recipients in this domain.
    pub recipients: Vec<String>,
    /// The message.
    pub message: Vec<u8>,
}

fn permanent(remote: Option<&str>, reply: &Reply, stage: &str) -> Outcome {
    let text = reply_text(reply);
    let status = text
        .split_whitespace()
        .next()
        .filter(|w| w.split('.').count() == 3 && w.starts_with('5'))
        .map(str::to_string)
        .unwrap_or_else(|| "5.0.0".to_string());
    Outcome::Permanent {
        remote: remote.map(str::to_string),
        status,
        diagnostic: format!("{} {text} (in reply to {stage})", reply.code),
    }
}

fn reply_text(reply: &Reply) -> String {
    reply.lines.join(" ")
}

/// Classifies a reply for every recipient in `rcpts`.
fn by_code(remote: &str, reply: &Reply, stage: &str) -> Outcome {
    if reply.code < 400 {
        Outcome::Delivered
    } else if reply.code < 500 {
        Outcome::Temporary(format!(
            "{remote} said: {} {} (in reply to {stage})",
            reply.code,
            reply_text(reply)
        ))
    } else {
        permanent(Some(remote), reply, stage)
    }
}

/// Delivers `jobs` (all for `domain`); returns one outcome per recipient, job by job.
pub async fn deliver_domain(
    resolver: &MailResolver,
    helo: &str,
    domain: &str,
    jobs: &[Job],
    timeout: Duration,
) -> Vec<Vec<Outcome>> {
    let all = |outcome: Outcome| {
        jobs.iter()
            .map(|j| vec![outcome.clone(); j.recipients.len()])
            .collect()
    };
    let targets = match resolver.relay_targets(domain).await {
        Ok(targets) if !targets.is_empty() => targets,
        Ok(_) => {
            return all(Outcome::Permanent {
                remote: None,
                status: "5.1.2".into(),
                diagnostic: format!("no mail server for domain {domain}"),
            })
        }
        Err(e) if e.is_temporary() => return all(Outcome::Temporary(e.to_string())),
        Err(e) => {
            return all(Outcome::Permanent {
                remote: None,
                status: "5.1.2".into(),
                diagnostic: format!("cannot find the mail server of {domain}: {e}"),
            })
        }
    };
    let mut last_error = String::new();
    for (host, addr) in targets {
        match session(&host, addr, helo, jobs, timeout).await {
            Ok(outcomes) => return outcomes,
            Err(e) => last_error = format!("connect to {host}[{addr}]: {e}"),
        }
    }
    all(Outcome::Temporary(last_error))
}

/// One SMTP session carrying every job. A connection-level failure before
/// any job was handed over is an `Err` (the caller tries the next MX).
async fn session(
    host: &str,
    addr: SocketAddr,
    helo: &str,
    jobs: &[Job],
    timeout: Duration,
) -> Result<Vec<Vec<Outcome>>, ClientError> {
    let (mut client, greeting) = SmtpClient::<TcpStream>::connect(addr, timeout).await?;
    if greeting.code != 220 {
        return Err(ClientError::Malformed(format!(
            "greeting {} {}",
            greeting.code,
            reply_text(&greeting)
        )));
    }
    let remote = format!("{host}[{addr}]");
    let mut ehlo = client.command(&format!("EHLO {helo}")).await?;
    if ehlo.code != 250 {
        ehlo = client.command(&format!("HELO {helo}")).await?;
        if ehlo.code != 250 {
            return Err(ClientError::Malformed(format!(
                "HELO refused: {} {}",
                ehlo.code,
                reply_text(&ehlo)
            )));
        }
    }
    let pipelining = ehlo
        .lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case("PIPELINING"));

    let mut results = Vec::with_capacity(jobs.len());
    // After a transaction that did not end with the message sent, the next
    // one starts with RSET; after a completed one the server is already reset.
    let mut needs_reset = false;
    for job in jobs {
        if needs_reset {
            client.command("RSET").await?;
        }
        let mut commands = vec![format!("MAIL FROM:<{}>", job.mail_from)];
        commands.extend(job.recipients.iter().map(|r| format!("RCPT TO:<{r}>")));
        let (replies, data) = if pipelining {
            // RFC 2920: DATA may close the group; the server refuses it when
            // no recipient was accepted.
            commands.push("DATA".into());
            let mut replies = client.pipeline(&commands).await?;
            let data = replies.pop();
            (replies, data)
        } else {
            let mut replies = Vec::new();
            for c in &commands {
                let reply = client.command(c).await?;
                let stop = replies.is_empty() && reply.code >= 400;
                replies.push(reply);
                if stop {
                    break;
                }
            }
            (replies, None)
        };
        let mail = &replies[0];
        if mail.code >= 400 {
            let outcome = by_code(&remote, mail, "MAIL FROM command");
            results.push(vec![outcome; job.recipients.len()]);
            needs_reset = true;
            continue;
        }
        let mut outcomes: Vec<Outcome> = replies[1..]
            .iter()
            .map(|r| by_code(&remote, r, "RCPT TO command"))
            .collect();
        let accepted: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i] == Outcome::Delivered)
            .collect();
        if accepted.is_empty() {
            results.push(outcomes);
            needs_reset = true;
            continue;
        }
        let data = match data {
            Some(reply) => reply,
            None => client.command("DATA").await?,
        };
        let (end, stage) = if data.code == 354 {
            (
                client.send_message(&job.message).await?,
                "end of DATA command",
            )
        } else {
            (data, "DATA command")
        };
        needs_reset = end.code >= 400;
        let final_outcome = by_code(&remote, &end, stage);
        for i in accepted {
            outcomes[i] = final_outcome.clone();
        }
        results.push(outcomes);
    }
    let _ = client.command("QUIT").await;
    Ok(results)
}
