//! The process's file descriptor limit: raised at start (the usual soft
//! limit of 1,024 is far below what a network of busy servers needs), and
//! read back to derive session caps that leave descriptors to spare.

/// Descriptors kept back for listeners, logs, the DNS and files.
const RESERVE: u64 = 64;
/// Descriptors one session may use at once: its socket, a spool file and
/// the file it is delivering into.
const PER_SESSION: u64 = 3;
/// Never ask for more than this, however high the hard limit.
const WANTED: u64 = 65_536;

/// Raises the soft descriptor limit toward the hard one (at most 65,536);
/// returns the soft limit now in force.
pub fn raise() -> std::io::Result<u64> {
    let mut limit = get()?;
    let wanted = limit.rlim_max.min(WANTED);
    if limit.rlim_cur < wanted {
        limit.rlim_cur = wanted;
        // SAFETY: `limit` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(get()?.rlim_cur)
}

/// The soft descriptor limit in force.
pub fn current() -> u64 {
    get().map(|l| l.rlim_cur).unwrap_or(1024)
}

fn get() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}

/// The most sessions each of `listeners` may hold so that all of them
/// together stay within `limit` descriptors (at least one each).
pub fn sessions_per_listener(limit: u64, listeners: usize) -> usize {
    let budget = limit.saturating_sub(RESERVE) / PER_SESSION;
    (budget / listeners.max(1) as u64).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_room_for_everything_else() {
        // 256 descriptors over 12 listeners: 64 kept back, 3 a session.
        assert_eq!(sessions_per_listener(256, 12), 5);
        assert!(sessions_per_listener(256, 12) as u64 * 12 * PER_SESSION + RESERVE <= 256);
        assert_eq!(sessions_per_listener(10, 12), 1);
        assert_eq!(sessions_per_listener(65_536, 12), 1818);
    }

    #[test]
    fn raising_never_lowers() {
        let before = current();
        assert!(raise().unwrap() >= before.min(WANTED));
    }
}
