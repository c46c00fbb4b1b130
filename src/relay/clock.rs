//! The relay's clock: wall time plus an offset the grader can advance, so
//! retries and queue lifetimes can pass without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// The most the clock can be advanced in all: a thousand years, in
/// milliseconds. Bounded so that `now + offset` stays within what
/// `SystemTime` holds on every platform, whatever a scenario advances by.
const MAX_OFFSET_MS: u64 = 1000 * 365 * 24 * 3600 * 1000;

/// A shared clock. Cheap to clone.
#[derive(Clone)]
pub struct RelayClock {
    inner: Arc<Inner>,
}

struct Inner {
    offset_ms: AtomicU64,
    /// How many times everything queued was made due at once.
    flushes: AtomicU64,
    advanced: watch::Sender<u64>,
    /// Where time stands still, for a frozen clock.
    frozen_at: Option<SystemTime>,
}

impl Default for RelayClock {
    fn default() -> Self {
        RelayClock::starting(None)
    }
}

impl RelayClock {
    fn starting(frozen_at: Option<SystemTime>) -> RelayClock {
        RelayClock {
            inner: Arc::new(Inner {
                offset_ms: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                advanced: watch::channel(0).0,
                frozen_at,
            }),
        }
    }

    /// A clock standing at now that only [`RelayClock::advance`] moves: a
    /// scenario's retries and queue lifetimes happen exactly when it says,
    /// however fast or slow the machine is.
    pub fn frozen() -> RelayClock {
        RelayClock::starting(Some(SystemTime::now()))
    }

    /// Whether only `advance` moves it.
    pub fn is_frozen(&self) -> bool {
        self.inner.frozen_at.is_some()
    }

    /// Now, as the relay sees it.
    pub fn now(&self) -> SystemTime {
        let now = self.inner.frozen_at.unwrap_or_else(SystemTime::now);
        // The offset is bounded (see MAX_OFFSET_MS); checked all the same,
        // for a system clock set absurdly far ahead.
        now.checked_add(self.offset()).unwrap_or(now)
    }

    /// How far the clock was advanced in all.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.inner.offset_ms.load(Ordering::Relaxed))
    }

    /// Makes `by` pass at once; every relay re-examines its queue. The
    /// total stops at a thousand years rather than wrapping round.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .inner
            .offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ms| {
                Some(ms.saturating_add(by).min(MAX_OFFSET_MS))
            });
        self.inner.advanced.send_modify(|n| *n += 1);
    }

    /// Makes everything queued due now, whatever its retry time (like
    /// `postqueue -f`); every relay re-examines its queue.
    pub fn flush(&self) {
        self.inner.flushes.fetch_add(1, Ordering::Relaxed);
        self.inner.advanced.send_modify(|n| *n += 1);
    }

    /// How many times [`RelayClock::flush`] was called.
    pub fn flushes(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// Changes whenever the clock is advanced.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.advanced.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_saturates_instead_of_wrapping() {
        let clock = RelayClock::default();
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.offset(), Duration::from_secs(90));
        clock.advance(Duration::MAX);
        clock.advance(Duration::MAX);
        assert_eq!(clock.offset(), Duration::from_millis(MAX_OFFSET_MS));
        assert!(clock.now() > SystemTime::now() + Duration::from_secs(900 * 365 * 86_400));
    }
}
