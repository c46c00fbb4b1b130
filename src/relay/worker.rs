//! The relay loop of one server: wakes when mail is queued, when a retry is
//! due or when the clock is advanced, never on a polling timer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::deliver::{deliver_domain, Job, Link, Outcome};
use super::dsn::{self, Failure};
use super::RelayClock;
use crate::id::QueueId;
use crate::mailhost::MailHost;
use crate::resolve::MailResolver;
use crate::smtp::address::domain_of;
use crate::store::QueuedMessage;

/// How long one relay connection may stay silent.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Retry state of a queued message's share of one domain, kept in memory:
/// after a restart every entry is tried at once, which is what a resumed
/// queue should do.
#[derive(Debug, Clone)]
struct Retry {
    attempts: u32,
    next: SystemTime,
    last_error: String,
}

/// `(queue id, destination domain)`: each domain's share of a message
/// retries on its own schedule.
type Share = (String, String);

/// One domain's delivery attempt, as it comes back from its task.
struct Done {
    domain: String,
    /// Each job's queue entry, its recipients in the domain, and what
    /// happened to each of them.
    jobs: Vec<(QueuedMessage, Vec<String>, Vec<Outcome>)>,
}

/// Runs the relay of `host` until `shutdown`. Each destination domain has
/// at most one delivery in flight, in its own task: a peer that stalls
/// delays only its own domain's mail.
pub async fn run(
    host: MailHost,
    resolver: MailResolver,
    clock: RelayClock,
    shutdown: CancellationToken,
) {
    let mut retries: HashMap<Share, Retry> = HashMap::new();
    let mut flying: JoinSet<Done> = JoinSet::new();
    // The domain each delivery task serves: those domains are busy.
    let mut tasks: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut started = Vec::new();
    let mut advanced = clock.subscribe();
    let mut queued = host.queue().subscribe();
    let mut flushed = clock.flushes();
    loop {
        // Seen before reading: a change made after this wakes the wait below.
        queued.borrow_and_update();
        let now = clock.now();
        if clock.flushes() != flushed {
            flushed = clock.flushes();
            for retry in retries.values_mut() {
                retry.next = now;
            }
        }
        let entries = host.queue().entries();
        retries.retain(|(id, _), _| entries.iter().any(|e| &e.id == id));
        let busy: HashSet<&String> = tasks.values().collect();
        for (domain, shares) in due(&entries, &retries, &busy, now) {
            let (host, resolver) = (host.clone(), resolver.clone());
            let task = flying.spawn(deliver(host, resolver, domain.clone(), shares));
            started.push((task.id(), domain));
        }
        tasks.extend(started.drain(..));
        let busy: HashSet<&String> = tasks.values().collect();
        // A frozen clock moves only when advanced, which wakes us anyway.
        let wait = retries
            .iter()
            .filter(|((_, domain), _)| !busy.contains(domain) && !clock.is_frozen())
            .map(|(_, r)| r.next.duration_since(now).unwrap_or(Duration::ZERO))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        // A delivery stuck on a silent peer must not hold up shutdown: what
        // it had not finished stays queued for the next run (dropping the
        // set aborts its tasks).
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(done) = flying.join_next_with_id(), if !flying.is_empty() => {
                let (id, done) = match done {
                    Ok((id, done)) => (id, Some(done)),
                    Err(error) => {
                        tracing::error!(server = %host.config().name, %error, "relay task failed");
                        (error.id(), None)
                    }
                };
                tasks.remove(&id);
                if let Some(done) = done {
                    settle(&host, &clock, done, &mut retries);
                }
            }
            _ = queued.changed() => {}
            _ = advanced.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The work due now, by destination domain: every share of an entry whose
/// domain is not in flight and whose retry time has come.
fn due(
    entries: &[QueuedMessage],
    retries: &HashMap<Share, Retry>,
    busy: &HashSet<&String>,
    now: SystemTime,
) -> BTreeMap<String, Vec<(QueuedMessage, Vec<String>)>> {
    let mut work: BTreeMap<String, Vec<(QueuedMessage, Vec<String>)>> = BTreeMap::new();
    for entry in entries {
        let mut split: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rcpt in &entry.recipients {
            split
                .entry(domain_of(rcpt).unwrap_or_default())
                .or_default()
                .push(rcpt.clone());
        }
        for (domain, rcpts) in split {
            let waiting = retries
                .get(&(entry.id.clone(), domain.clone()))
                .is_some_and(|r| r.next > now);
            if !waiting && !busy.contains(&domain) {
                work.entry(domain).or_default().push((entry.clone(), rcpts));
            }
        }
    }
    work
}

/// One domain's delivery: reads its messages, sends them in one session.
async fn deliver(
    host: MailHost,
    resolver: MailResolver,
    domain: String,
    shares: Vec<(QueuedMessage, Vec<String>)>,
) -> Done {
    let me = host.config().name.clone();
    let mut readable = Vec::with_capacity(shares.len());
    let mut jobs = Vec::with_capacity(shares.len());
    for (entry, recipients) in shares {
        match host.queue().open_message(&entry.id) {
            Ok(message) => {
                jobs.push(Job {
                    id: entry.id.to_string(),
                    mail_from: entry.mail_from.clone(),
                    recipients: recipients.clone(),
                    message,
                    body: entry.body,
                });
                readable.push((entry, recipients));
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
    let connector = host
        .tls_client()
        .map(|c| tokio_rustls::TlsConnector::from(c.clone()));
    // A recipient the next server accepted leaves the queue at once, not
    // when the whole batch is done: after a kill -9 or a stop mid-batch,
    // only the message in flight can be sent again.
    let acknowledged = |job: &Job, outcomes: &[Outcome]| {
        let accepted: Vec<&String> = job
            .recipients
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Delivered { .. }))
            .map(|(r, _)| r)
            .collect();
        if accepted.is_empty() {
            return;
        }
        let Some(entry) = host.queue().entries().into_iter().find(|e| e.id == job.id) else {
            return;
        };
        let pending: Vec<String> = entry
            .recipients
            .into_iter()
            .filter(|r| !accepted.contains(&r))
            .collect();
        if let Err(error) = host.queue().update(&job.id, &job.mail_from, &pending) {
            tracing::error!(server = %host.config().name, id = %job.id, %error, "cannot update the queue");
        }
    };
    let link = Link {
        acknowledged: Some(&acknowledged),
        faults: host.faults(),
        helo: &me,
        scratch: host.queue().dir(),
        timeout: SMTP_TIMEOUT,
        tls: connector.as_ref(),
    };
    let outcomes = deliver_domain(&resolver, link, &domain, &jobs).await;
    drop(jobs);
    Done {
        domain,
        jobs: readable
            .into_iter()
            .zip(outcomes)
            .map(|((entry, rcpts), outcomes)| (entry, rcpts, outcomes))
            .collect(),
    }
}

/// Records what one domain's attempt achieved: delivered and failed
/// recipients leave their entries (failures bounce), the rest wait.
fn settle(host: &MailHost, clock: &RelayClock, done: Done, retries: &mut HashMap<Share, Retry>) {
    let policy = &host.config().policy;
    let me = &host.config().name;
    let now = clock.now();
    for (entry, rcpts, outcomes) in done.jobs {
        let share = (entry.id.clone(), done.domain.clone());
        let mut finished = Vec::new();
        let mut waiting = Vec::new();
        let mut failures = Vec::new();
        let mut last_error = String::new();
        for (rcpt, outcome) in rcpts.iter().zip(&outcomes) {
            match outcome {
                Outcome::Delivered { remote, reply } => {
                    host.events().emit(
                        crate::events::Event::new(crate::events::EventKind::Relayed, me)
                            .message(&entry.id)
                            .from(&entry.mail_from)
                            .recipient(rcpt)
                            .to(remote)
                            .reply(reply),
                    );
                    tracing::info!(
                        "{me}: {} → {rcpt}: relayed (id {})",
                        if entry.mail_from.is_empty() {
                            "<>"
                        } else {
                            &entry.mail_from
                        },
                        entry.id
                    );
                    finished.push(rcpt.clone());
                }
                Outcome::Temporary(cause) => {
                    tracing::info!(server = %me, id = %entry.id, to = %rcpt, reason = %cause, "will retry");
                    last_error = cause.to_string();
                    waiting.push(rcpt.clone());
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
            if let Some(previous) = retries.get(&share) {
                last_error = previous.last_error.clone();
            }
        }
        let age = now
            .duration_since(QueueId::created(&entry.id))
            .unwrap_or(Duration::ZERO);
        if !waiting.is_empty() && age >= policy.queue_lifetime {
            for rcpt in waiting.drain(..) {
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
            // A bounce quotes the headers only (RFC 3462 text/rfc822-headers).
            let headers = host
                .queue()
                .open_message(&entry.id)
                .map_err(std::io::Error::other)
                .and_then(|m| m.headers(dsn::MAX_QUOTED_HEADERS));
            match headers {
                Ok(original) => bounce(host, &entry, &failures, &original),
                Err(error) => {
                    tracing::error!(server = %me, id = %entry.id, error = %crate::error_chain(&error), "cannot read the message to bounce it")
                }
            }
        }
        finished.extend(failures.iter().map(|f| f.recipient.clone()));
        // Other domains' shares of the entry may have settled meanwhile:
        // narrow what the queue holds now, not what this attempt started with.
        let current = host
            .queue()
            .entries()
            .into_iter()
            .find(|e| e.id == entry.id)
            .map(|e| e.recipients)
            .unwrap_or_default();
        let pending: Vec<String> = current
            .into_iter()
            .filter(|r| !finished.contains(r))
            .collect();
        if let Err(error) = host.queue().update(&entry.id, &entry.mail_from, &pending) {
            tracing::error!(server = %me, id = %entry.id, %error, "cannot update the queue");
        }
        if waiting.is_empty() {
            retries.remove(&share);
            host.set_retry(&share.0, &share.1, None);
        } else {
            let attempts = retries
                .get(&share)
                .map_or(0, |r| r.attempts)
                .saturating_add(1);
            let next = later(now, backoff(policy, attempts));
            host.set_retry(
                &share.0,
                &share.1,
                Some(crate::mailhost::RetryState {
                    attempts,
                    next,
                    last_error: last_error.clone(),
                }),
            );
            retries.insert(
                share,
                Retry {
                    attempts,
                    next,
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
            for failure in failures {
                host.events().emit(
                    crate::events::Event::new(crate::events::EventKind::Bounced, me)
                        .message(&entry.id)
                        .from(sender)
                        .recipient(&failure.recipient)
                        .reply(&failure.diagnostic)
                        .detail(format!("status {}", failure.status)),
                );
            }
            let failed: Vec<&str> = failures.iter().map(|f| f.recipient.as_str()).collect();
            tracing::info!(
                "{me}: {sender} → {}: bounced, a report went to the sender (id {})",
                failed.join(", "),
                entry.id
            )
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
