//! The one id generator: every message a server takes gets a [`QueueId`],
//! shown in `250 ... queued as <id>`, written in its `Received:` header, and
//! used as its queue file's name when it must be relayed, so the three can
//! be matched by eye.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A message id, unique across processes on one machine: the time in
/// nanoseconds (zero-padded, so ids sort by age), the process id and a
/// sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

impl QueueId {
    /// A fresh id.
    pub fn next() -> QueueId {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        QueueId(format!(
            "{nanos:020}.{}.{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the message with id `id` was taken, read back from the id
    /// (the Unix epoch for an id this generator did not make).
    pub fn created(id: &str) -> SystemTime {
        let nanos: u128 = id
            .split('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        UNIX_EPOCH + Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }
}

impl From<String> for QueueId {
    /// An id read back, e.g. from a queue file's name.
    fn from(id: String) -> Self {
        QueueId(id)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sorted_and_dated() {
        let before = SystemTime::now() - Duration::from_secs(1);
        let a = QueueId::next();
        let b = QueueId::next();
        assert!(a < b, "{a} < {b}");
        assert!(QueueId::created(a.as_str()) >= before);
        assert_eq!(QueueId::created("junk"), UNIX_EPOCH);
    }
}
