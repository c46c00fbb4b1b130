//! The one id generator: every message a server takes gets a [`QueueId`],
//! shown in `250 ... queued as <id>`, written in its `Received:` header, and
//! used as its queue file's name when it must be relayed, so the three can
//! be matched by eye.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The process id, asked of the kernel once (each `getpid` is a system call).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Writes `n` in decimal, zero-padded to `width` digits, into `out` at
/// `at` (which has room: 39 digits for any u128); returns where it ended.
fn push_decimal(out: &mut [u8], at: usize, mut n: u128, width: usize) -> usize {
    let mut digits = [b'0'; 39];
    let mut start = digits.len();
    while n > u128::from(u64::MAX) {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // The rest in 64 bits, where dividing by ten is a multiplication.
    let mut n = n as u64;
    while n > 0 {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    start = start.min(digits.len() - width.max(1));
    let digits = &digits[start..];
    out[at..at + digits.len()].copy_from_slice(digits);
    at + digits.len()
}

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
        // As `format!("{nanos:020}.{pid}.{seq}")` wrote it, without the
        // formatting machinery (padding a u128 was most of an id's cost,
        // and an id is made for every message).
        let mut id = [0u8; 80];
        let mut len = push_decimal(&mut id, 0, nanos, 20);
        id[len] = b'.';
        len = push_decimal(&mut id, len + 1, u128::from(pid()), 1);
        id[len] = b'.';
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        len = push_decimal(&mut id, len + 1, u128::from(seq), 1);
        let id = std::str::from_utf8(&id[..len])
            .unwrap_or_default()
            .to_owned();
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
        let written = |n: u128, width: usize| {
            let mut out = [0u8; 48];
            let end = push_decimal(&mut out, 2, n, width);
            String::from_utf8(out[2..end].to_vec()).unwrap()
        };
        for (n, width) in [
            (0u128, 20),
            (7, 20),
            (1_795_422_257_123_456_789, 20),
            (0, 1),
        ] {
            assert_eq!(written(n, width), format!("{n:0width$}"));
        }
        assert_eq!(written(u128::MAX, 20), u128::MAX.to_string());
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
