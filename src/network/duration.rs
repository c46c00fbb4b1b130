//! Durations in network files: `250ms`, `5s`, `2m`, `1h`, `1d`, or a bare number of seconds.

use std::time::Duration;

/// The longest duration any setting may hold: one year. Nothing mailnet
/// waits for needs more, and a bound this far below what `Duration` and the
/// clocks can hold keeps every `now + duration` in range.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `250ms`, `1.5s`, `2m`, `1h`, `1d` or a plain number of seconds, at most [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_at_most(text, MAX)
}

/// [`parse`], refusing more than `max` (itself at most [`MAX`]) as too long.
pub(crate) fn parse_at_most(text: &str, max: Duration) -> Result<Duration, String> {
    let max = max.min(MAX);
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = text.strip_suffix('d') {
        (n, 86_400.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("`{text}` is not a duration (try `250ms`, `5s`, `2m`, `1h` or `1d`)")
    })?;
    if value.is_nan() {
        return Err(format!(
            "`{text}` is not a duration (try `250ms`, `5s`, `2m`, `1h` or `1d`)"
        ));
    }
    if value < 0.0 {
        return Err(format!(
            "`{text}` is not a duration: it must be zero or more"
        ));
    }
    // `try_from` refuses what `Duration` cannot hold (`1e300`, `inf`), where
    // `from_secs_f64` would panic; the cap refuses the rest of the absurd.
    match Duration::try_from_secs_f64(value * scale) {
        Ok(duration) if duration <= max => Ok(duration),
        _ if max == MAX => Err(format!(
            "`{text}` is too long: at most {} (1 year)",
            display(MAX)
        )),
        _ => Err(format!("`{text}` is too long: at most {}", display(max))),
    }
}

/// Writes `duration` as a file would: in the largest unit that says it
/// exactly (`365d`, `1m`, `100ms`, `0s`), so a message's bound can be copied back.
pub fn display(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse("soon").is_err());
        assert!(parse("-1s").is_err());
    }

    #[test]
    fn at_most_a_year_and_never_a_panic() {
        assert_eq!(parse("365d"), Ok(MAX));
        assert_eq!(parse("31536000"), Ok(MAX));
        let too_long = "is too long: at most 365d (1 year)";
        for text in ["365.001d", "31536001s", "1e19s", "1e300", "inf", "1e999h"] {
            assert_eq!(parse(text), Err(format!("`{text}` {too_long}")), "{text}");
        }
        assert_eq!(
            parse("NaN"),
            Err("`NaN` is not a duration (try `250ms`, `5s`, `2m`, `1h` or `1d`)".into())
        );
        assert!(parse("-inf").is_err());
    }

    #[test]
    fn display_uses_the_largest_exact_unit() {
        assert_eq!(display(MAX), "365d");
        assert_eq!(display(Duration::from_secs(3600)), "1h");
        assert_eq!(display(Duration::from_secs(90)), "90s");
        assert_eq!(display(Duration::from_millis(100)), "100ms");
        assert_eq!(display(Duration::ZERO), "0s");
        for text in ["365d", "1h", "90s", "100ms", "0s"] {
            assert_eq!(display(parse(text).unwrap()), text);
        }
    }
}
