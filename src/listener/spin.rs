//! Spin, then sleep: after a burst of traffic, the serving thread keeps
//! polling its sockets for a short while before it sleeps in the kernel.
//!
//! Why: a client that writes to a server asleep in `epoll_wait` pays for
//! waking it (and on a virtual machine, for waking its idle virtual CPU),
//! and the kernel tends to pull the woken server onto the client's own core.
//! Under `smtp-source` on 2 cores a server that slept between commands cost
//! its client so much that a leaner server made the client slower; polling
//! for 50 µs after the last read took new connections from 0.92× to 1.12×
//! smtp-sink's rate (README, "Performance"). Go's scheduler and Linux's
//! `haltpoll` spin before sleeping for the same reason.
//!
//! Only with one worker thread: with more, an idle worker blocked in
//! `epoll_wait` holds tokio's I/O driver, and a spinning one cannot poll.
//!
//! How: one task loops on [`tokio::task::yield_now`]. A runtime with a task
//! that yielded does not block when it runs out of work: it polls the
//! sockets without waiting (`epoll_wait` with a zero timeout) and comes back
//! to the task. Sessions mark each read and each accepted connection with
//! [`Activity::touch`]; once nothing was marked for the spin time, the task
//! sleeps until the next mark, so an idle network costs no CPU.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What the serving threads did lately, and the spinning task's bell.
pub struct Activity {
    marks: AtomicU64,
    asleep: AtomicBool,
    bell: Notify,
    /// Times the spinning task saw new marks (and started its spin over).
    rounds: AtomicU64,
}

/// The activity of every server in this process.
pub static SERVING: Activity = Activity::new();

impl Activity {
    /// No activity yet.
    pub const fn new() -> Activity {
        Activity {
            marks: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            bell: Notify::const_new(),
            rounds: AtomicU64::new(0),
        }
    }

    /// Marks activity (a read, an accepted connection), waking the spinning
    /// task if it sleeps.
    #[inline]
    pub fn touch(&self) {
        // SeqCst on both sides (here and in `spin`): either the spinner sees
        // this mark before it sleeps, or this sees it asleep and rings.
        self.marks.fetch_add(1, Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            self.asleep.store(false, Ordering::SeqCst);
            self.bell.notify_one();
        }
    }

    /// Whether the spinning task sleeps (for tests and diagnostics).
    pub fn asleep(&self) -> bool {
        self.asleep.load(Ordering::SeqCst)
    }

    /// Keeps the runtime polling for `spin` after each mark, then sleeps
    /// until the next one; runs until dropped. A zero `spin` returns at once.
    pub async fn spin(&self, spin: Duration) {
        if spin.is_zero() {
            return;
        }
        loop {
            // Marks are read before the round is counted: a mark after the
            // count is then always one this round has not seen.
            let seen = self.marks.load(Ordering::SeqCst);
            self.rounds.fetch_add(1, Ordering::SeqCst);
            let quiet_since = Instant::now();
            loop {
                tokio::task::yield_now().await;
                if self.marks.load(Ordering::SeqCst) != seen {
                    break;
                }
                if quiet_since.elapsed() >= spin {
                    self.asleep.store(true, Ordering::SeqCst);
                    if self.marks.load(Ordering::SeqCst) == seen {
                        self.bell.notified().await;
                    }
                    self.asleep.store(false, Ordering::SeqCst);
                    break;
                }
            }
        }
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (up to 10 s) until `condition` holds, yielding to the runtime.
    async fn until(condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "condition never held");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_spinner_sleeps_when_quiet_and_wakes_on_activity() {
        static ACTIVITY: Activity = Activity::new();
        let spinner = tokio::spawn(ACTIVITY.spin(Duration::from_micros(200)));
        // Nothing happens: it stops polling and sleeps.
        until(|| ACTIVITY.asleep()).await;
        // A read: it wakes and starts a round, then sleeps once it is quiet.
        let round = ACTIVITY.rounds.load(Ordering::SeqCst);
        ACTIVITY.touch();
        until(|| ACTIVITY.rounds.load(Ordering::SeqCst) > round).await;
        until(|| ACTIVITY.asleep()).await;
        // Marks in a row: each starts a new round.
        let round = ACTIVITY.rounds.load(Ordering::SeqCst);
        ACTIVITY.touch();
        until(|| ACTIVITY.rounds.load(Ordering::SeqCst) > round).await;
        for _ in 0..10 {
            let round = ACTIVITY.rounds.load(Ordering::SeqCst);
            ACTIVITY.touch();
            until(|| ACTIVITY.rounds.load(Ordering::SeqCst) > round).await;
        }
        until(|| ACTIVITY.asleep()).await;
        spinner.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mark_racing_the_spinner_to_sleep_is_never_lost() {
        // With a 1 µs spin the spinner goes to sleep all the time; every
        // mark must start a new round, or it would sleep through it. (A
        // stress test: it runs the race 2,000 times on two threads but
        // cannot force the narrow window where a mark lands mid-sleep.)
        static ACTIVITY: Activity = Activity::new();
        let spinner = tokio::spawn(ACTIVITY.spin(Duration::from_micros(1)));
        for _ in 0..2_000 {
            let round = ACTIVITY.rounds.load(Ordering::SeqCst);
            ACTIVITY.touch();
            until(|| ACTIVITY.rounds.load(Ordering::SeqCst) > round).await;
        }
        spinner.abort();
    }

    #[tokio::test]
    async fn no_spin_time_means_no_spinning() {
        let activity = Activity::new();
        tokio::time::timeout(Duration::from_secs(10), activity.spin(Duration::ZERO))
            .await
            .expect("returns at once");
    }
}
