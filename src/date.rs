//! Dates as mail headers write them (RFC 5322), in UTC; no time-zone database needed.

use crate::text::push_decimal;
use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `(year, month 1-12, day 1-31)` from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn split(time: SystemTime) -> (i64, i64) {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    (secs.div_euclid(86_400), secs.rem_euclid(86_400))
}

/// `hh:mm:ss` of `secs` into the day.
fn push_clock(out: &mut String, secs: i64) {
    let secs = secs as u32;
    push_decimal(out, u64::from(secs / 3600), 2);
    out.push(':');
    push_decimal(out, u64::from(secs / 60 % 60), 2);
    out.push(':');
    push_decimal(out, u64::from(secs % 60), 2);
}

fn millis(time: SystemTime) -> u32 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0)
}

/// `Mon, 23 Nov 2026 08:24:17 +0000`.
pub fn rfc5322(time: SystemTime) -> String {
    let (days, secs) = split(time);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(31);
    out.push_str(DAYS[days.rem_euclid(7) as usize]);
    out.push_str(", ");
    push_decimal(&mut out, day.into(), 0);
    out.push(' ');
    out.push_str(MONTHS[month as usize - 1]);
    out.push(' ');
    if (0..=9999).contains(&year) {
        push_decimal(&mut out, year as u64, 4);
    } else {
        out.push_str(&year.to_string());
    }
    out.push(' ');
    push_clock(&mut out, secs);
    out.push_str(" +0000");
    out
}

/// [`rfc5322`] of now, formatted once a second per thread and shared:
/// every message's `Received:` line carries it.
pub fn rfc5322_now() -> std::sync::Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, std::sync::Arc<str>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let now = SystemTime::now();
    let (days, secs) = split(now);
    let key = days * 86_400 + secs;
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((at, text)) if *at == key => text.clone(),
            _ => {
                let text: std::sync::Arc<str> = rfc5322(now).into();
                *last = Some((key, text.clone()));
                text
            }
        }
    })
}

/// `2026-11-23T08:24:17.123Z` (RFC 3339), for JSON.
pub fn rfc3339(time: SystemTime) -> String {
    let (days, secs) = split(time);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    if (0..=9999).contains(&year) {
        push_decimal(&mut out, year as u64, 4);
    } else {
        out.push_str(&format!("{year:04}"));
    }
    out.push('-');
    push_decimal(&mut out, u64::from(month), 2);
    out.push('-');
    push_decimal(&mut out, u64::from(day), 2);
    out.push('T');
    push_clock(&mut out, secs);
    out.push('.');
    push_decimal(&mut out, u64::from(millis(time)), 3);
    out.push('Z');
    out
}

/// `08:24:17.123`, for transcripts.
pub fn clock_time(time: SystemTime) -> String {
    let digits = clock_digits(time);
    String::from_utf8_lossy(&digits).into_owned()
}

/// [`clock_time`] as ASCII bytes, without allocating: written before every
/// transcript line.
pub fn clock_digits(time: SystemTime) -> [u8; 12] {
    let (_, secs) = split(time);
    let secs = secs as u32;
    let millis = millis(time);
    let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let [h1, h2] = two(secs / 3600);
    let [m1, m2] = two(secs / 60 % 60);
    let [s1, s2] = two(secs % 60);
    [
        h1,
        h2,
        b':',
        m1,
        m2,
        b':',
        s1,
        s2,
        b'.',
        b'0' + (millis / 100 % 10) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The shared date is the one of now, and made once a second.
    #[test]
    fn the_date_of_now_is_now_and_made_once_a_second() {
        let before = SystemTime::now();
        let first = rfc5322_now();
        let second = rfc5322_now();
        let after = SystemTime::now();
        for got in [&first, &second] {
            assert!(
                **got == rfc5322(before) || **got == rfc5322(after),
                "{got} is not between {before:?} and {after:?}"
            );
        }
        if first == second {
            assert!(std::sync::Arc::ptr_eq(&first, &second), "formatted twice");
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_422_257);
        assert_eq!(rfc5322(t), "Mon, 23 Nov 2026 08:24:17 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
        let t = t + Duration::from_millis(7);
        assert_eq!(rfc3339(t), "2026-11-23T08:24:17.007Z");
        assert_eq!(clock_time(t), "08:24:17.007");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let late = UNIX_EPOCH + Duration::from_secs(86_399) + Duration::from_millis(999);
        assert_eq!(clock_time(late), "23:59:59.999");
        assert_eq!(rfc5322(late), "Thu, 1 Jan 1970 23:59:59 +0000");
    }
}
