//! The one id generator: every message a server takes gets a [`QueueId`],
//! shown in `250 ... queued as <id>`, written in its `Received:` header, and
//! used as its queue file's name when it must be relayed, so the three can
//! be matched by eye.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::text::push_decimal;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The process id, asked of the kernel once (each `getpid` is a system call).
pub fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Nanoseconds since 1970, as a u64 (enough until 2554; a u128 costs more
/// to write out), for ids that sort by age.
pub fn unix_nanos() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// A message id, unique across processes on one machine: the time in
/// nanoseconds (zero-padded, so ids sort by age), the process id and a
/// sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

impl QueueId {
    /// A fresh id.
    pub fn next() -> QueueId {
        // `{nanos:020}.{pid}.{seq}`, without `format!` (padding a u128 was
        // most of an id's cost, and an id is made for every message).
        let mut id = String::with_capacity(48);
        push_decimal(&mut id, unix_nanos(), 20);
        id.push('.');
        push_decimal(&mut id, pid().into(), 0);
        id.push('.');
        push_decimal(&mut id, SEQUENCE.fetch_add(1, Ordering::Relaxed), 0);
        QueueId(id)
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
    fn ids_are_written_as_the_format_wrote_them() {
        let id = QueueId::next();
        let parts: Vec<&str> = id.as_str().split('.').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[0].len(), 20);
        assert_eq!(parts[1], std::process::id().to_string());
        assert!(parts[2].parse::<u64>().is_ok());
    }

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
