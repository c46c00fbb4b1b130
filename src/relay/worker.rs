//! The relay loop of one server: wakes when mail is queued, when a retry is
//! due or when the clock is advanced, never on a polling timer.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::deliver::{deliver_domain, Job, Outcome};
use super::dsn::{self, Failure};
use super::RelayClock;
use crate::id::QueueId;
use crate::mailhost::MailHost;
use crate::resolve::MailResolver;
use crate::smtp::address::domain_of;
use crate::store::QueuedMessage;

/// How long one relay connection may stay silent.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Retry state of a queued message, kept in memory: after a restart every
/// entry is tried at once, which is what a resumed queue should do.
#[derive(Debug, Clone)]
struct Retry {
    attempts: u32,
    next: SystemTime,
    last_error: String,
}

/// Runs the relay of `host` until `shutdown`.
pub async fn run(
    host: MailHost,
    resolver: MailResolver,
    clock: RelayClock,
    shutdown: CancellationToken,
) {
    let mut retries: HashMap<String, Retry> = HashMap::new();
    let mut advanced = clock.subscribe();
    let mut queued = host.queue().subscribe();
    loop {
        // Seen before reading: a change made after this wakes the wait below.
        queued.borrow_and_update();
        let now = clock.now();
        let entries = host.queue().entries();
        retries.retain(|id, _| entries.iter().any(|e| &e.id == id));
        let due: Vec<QueuedMessage> = entries
            .iter()
            .filter(|e| retries.get(&e.id).map(|r| r.next <= now).unwrap_or(true))
            .cloned()
            .collect();
        if !due.is_empty() {
            // A delivery stuck on a silent peer must not hold up shutdown:
            // what it had not finished stays queued for the next run.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = attempt(&host, &resolver, &clock, &due, &mut retries) => {}
            }
            // An attempt can finish without awaiting anything (a domain
            // the zone does not know); let the other tasks run between rounds.
            tokio::task::yield_now().await;
            continue;
        }
        let wait = retries
            .values()
            .map(|r| r.next.duration_since(now).unwrap_or(Duration::ZERO))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = queued.changed() => {}
            _ = advanced.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn attempt(
    host: &MailHost,
    resolver: &MailResolver,
    clock: &RelayClock,
    due: &[QueuedMessage],
    retries: &mut HashMap<String, Retry>,
) {
    let policy = host.config().policy.clone();
    let me = host.config().name.clone();
    // domain -> (entry index, recipients)
    let mut by_domain: BTreeMap<String, Vec<(usize, Vec<String>)>> = BTreeMap::new();
    let mut messages = Vec::with_capacity(due.len());
    let mut due_ok = Vec::with_capacity(due.len());
    for entry in due {
        match host.queue().message(&entry.id) {
            Ok(message) => {
                messages.push(message);
                due_ok.push(entry.clone());
            }
            // Never relay what cannot be read as if it were empty: keep it
            // aside for a person to look at.
            Err(error) => match host.queue().set_aside(&entry.id) {
                Ok(path) => {
                    tracing::error!(server = %me, id = %entry.id, error = %crate::error_chain(&error), kept = %path.display(), "unreadable queue entry set aside")
                }
                Err(e) => {
                    tracing::error!(server = %me, id = %entry.id, error = %crate::error_chain(&error), "unreadable queue entry; cannot set it aside either: {e}")
                }
            },
        }
    }
    let due = &due_ok[..];
    for (i, entry) in due.iter().enumerate() {
        let mut split: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rcpt in &entry.recipients {
            split
                .entry(domain_of(rcpt).unwrap_or_default())
                .or_default()
                .push(rcpt.clone());
        }
        for (domain, rcpts) in split {
            by_domain.entry(domain).or_default().push((i, rcpts));
        }
    }

    let deliveries = by_domain.iter().map(|(domain, shares)| {
        let jobs: Vec<Job> = shares
            .iter()
            .map(|(i, rcpts)| Job {
                mail_from: due[*i].mail_from.clone(),
                recipients: rcpts.clone(),
                message: messages[*i].clone(),
            })
            .collect();
        let me = me.clone();
        async move { deliver_domain(resolver, &me, domain, &jobs, SMTP_TIMEOUT).await }
    });
    let results = futures::future::join_all(deliveries).await;

    // entry index -> (recipient, outcome)
    let mut outcomes: Vec<Vec<(String, Outcome)>> = vec![Vec::new(); due.len()];
    for ((_, shares), per_job) in by_domain.iter().zip(results) {
        for ((i, rcpts), job_outcomes) in shares.iter().zip(per_job) {
            outcomes[*i].extend(rcpts.iter().cloned().zip(job_outcomes));
        }
    }

    let now = clock.now();
    for (i, entry) in due.iter().enumerate() {
        let mut pending = Vec::new();
        let mut failures = Vec::new();
        let mut last_error = String::new();
        for (rcpt, outcome) in &outcomes[i] {
            match outcome {
                Outcome::Delivered => {
                    tracing::info!(server = %me, id = %entry.id, to = %rcpt, "relayed")
                }
                Outcome::Temporary(cause) => {
                    tracing::info!(server = %me, id = %entry.id, to = %rcpt, reason = %cause, "will retry");
                    last_error = cause.to_string();
                    pending.push(rcpt.clone());
                }
                Outcome::Permanent(cause) => failures.push(Failure {
                    recipient: rcpt.clone(),
                    status: cause.status(),
                    remote_mta: cause.remote().map(str::to_string),
                    diagnostic: cause.to_string(),
                }),
            }
        }
        if last_error.is_empty() {
            if let Some(previous) = retries.get(&entry.id) {
                last_error = previous.last_error.clone();
            }
        }
        let age = now
            .duration_since(QueueId::created(&entry.id))
            .unwrap_or(Duration::ZERO);
        if !pending.is_empty() && age >= policy.queue_lifetime {
            for rcpt in pending.drain(..) {
                failures.push(Failure {
                    recipient: rcpt,
                    status: "4.4.7".into(),
                    remote_mta: None,
                    diagnostic: format!(
                        "delivery time expired after {}s: {last_error}",
                        age.as_secs()
                    ),
                });
            }
        }
        if !failures.is_empty() {
            bounce(host, entry, &failures, &messages[i]);
        }
        if let Err(error) = host.queue().update(&entry.id, &entry.mail_from, &pending) {
            tracing::error!(server = %me, id = %entry.id, %error, "cannot update the queue");
        }
        if pending.is_empty() {
            retries.remove(&entry.id);
        } else {
            let attempts = retries
                .get(&entry.id)
                .map_or(0, |r| r.attempts)
                .saturating_add(1);
            retries.insert(
                entry.id.clone(),
                Retry {
                    attempts,
                    next: later(now, backoff(&policy, attempts)),
                    last_error,
                },
            );
        }
    }
}

/// The wait before attempt `attempts + 1`: `retry_initial`, doubling with
/// each attempt, at most `retry_max`. Saturating, so no policy can make it
/// overflow: a network file bounds both, but a `Policy` built in code need not be.
fn backoff(policy: &crate::network::Policy, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    policy
        .retry_initial
        .saturating_mul(1 << doublings)
        .min(policy.retry_max)
}

/// `now + wait`, or, past what `SystemTime` can hold, the furthest time on
/// the way there that it can: `now + wait` would panic.
fn later(now: SystemTime, wait: Duration) -> SystemTime {
    let mut wait = wait;
    loop {
        if let Some(time) = now.checked_add(wait) {
            return time;
        }
        wait /= 2;
    }
}

/// Sends a delivery status notification to the sender; never one for a bounce.
fn bounce(host: &MailHost, entry: &QueuedMessage, failures: &[Failure], original: &[u8]) {
    let me = &host.config().name;
    if entry.mail_from.is_empty() {
        tracing::warn!(server = %me, id = %entry.id, "a bounce could not be delivered; not bouncing a bounce");
        return;
    }
    let date = crate::date::rfc5322(SystemTime::now());
    let report = match dsn::bounce(me, &entry.mail_from, failures, original, &date) {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(server = %me, id = %entry.id, %error, "cannot build a bounce; none sent");
            return;
        }
    };
    let sender = &entry.mail_from;
    let local = domain_of(sender)
        .map(|d| host.config().hosts_domain(&d))
        .unwrap_or(false);
    let result = if local {
        if host.config().user(sender).is_none() {
            tracing::warn!(server = %me, %sender, "bounce for a sender that is not a user here; dropped");
            return;
        }
        let mut stored = b"Return-Path: <>\r\n".to_vec();
        stored.extend_from_slice(&report);
        host.store()
            .deliver(sender, &stored)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        host.queue()
            .enqueue(&QueueId::next(), "", std::slice::from_ref(sender), &report)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(()) => {
            tracing::info!(server = %me, id = %entry.id, %sender, failed = failures.len(), "bounced")
        }
        Err(error) => {
            tracing::error!(server = %me, id = %entry.id, %error, "cannot store a bounce")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Policy;

    #[test]
    fn backoff_doubles_up_to_retry_max_and_never_overflows() {
        let policy = Policy::default();
        let waits: Vec<u64> = (1..=8).map(|n| backoff(&policy, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        let absurd = Policy {
            retry_initial: Duration::MAX,
            retry_max: Duration::MAX,
            ..Policy::default()
        };
        for attempts in [0, 1, 2, 21, u32::MAX] {
            assert_eq!(backoff(&absurd, attempts), Duration::MAX);
        }
    }

    #[test]
    fn later_stops_where_the_clock_does() {
        let now = SystemTime::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(1_000_000));
    }
}
